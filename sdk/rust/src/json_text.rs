//! JSON documents as the Python SDK writes them (`events._json_text`): tool arguments and results,
//! widget and structured data, custom context.

use serde_json::Value as Json;

/// A string that already parses as JSON is kept as it is; any other string becomes a JSON string;
/// other values are written compactly. Like Python's `json.dumps` (its `ensure_ascii`), every character
/// outside printable ASCII is escaped as `\uXXXX`, so the text is the same byte for byte.
pub fn json_text(value: &Json) -> String {
    if let Json::String(text) = value {
        if serde_json::from_str::<Json>(text).is_ok() {
            return text.clone();
        }
    }
    ascii_escaped(&value.to_string())
}

/// JSON text with every character from U+007F up escaped: outside strings JSON is ASCII, so escaping
/// the whole text only touches string contents.
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c as u32) < 0x7f {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_that_parse_are_kept_and_others_are_quoted() {
        assert_eq!(json_text(&json!("{\"a\": 1}")), "{\"a\": 1}");
        assert_eq!(json_text(&json!("plain text")), "\"plain text\"");
        assert_eq!(json_text(&json!("42")), "42");
    }

    #[test]
    fn values_are_compact_in_insertion_order_with_non_ascii_escaped_as_python_does() {
        // json.dumps({"z": 1, "a": ["é", "😀", "\x7f"]}, separators=(",", ":"))
        let value = json!({"z": 1, "a": ["é", "😀", "\u{7f}"], "f": 1.5});
        assert_eq!(json_text(&value), r#"{"z":1,"a":["\u00e9","\ud83d\ude00","\u007f"],"f":1.5}"#);
        // json.dumps("é ✓\n")
        assert_eq!(json_text(&json!("é ✓\n")), r#""\u00e9 \u2713\n""#);
    }
}
