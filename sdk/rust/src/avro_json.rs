//! The Avro JSON encoding (what the shared vectors and the record builders hold) to and from
//! apache-avro's `Value`, guided by the schema.
//!
//! Unions are wrapped as `{"type name": value}` (a named type by its full name, a logical type by its
//! underlying type), so no branch is guessed; `bytes` and `fixed` are strings of code points 0-255.
//! A record field left out takes its schema default, where (as the spec says) a union's default is
//! the unwrapped value of its first branch.

use std::collections::HashMap;

use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::types::Value;
use apache_avro::Schema;
use serde_json::{Map, Number, Value as Json};

use crate::contract::SchemaVersion;

/// Avro JSON `json` as a `Value` of `version`'s schema; the error names the path to the bad field.
pub fn to_value(json: &Json, version: &SchemaVersion) -> Result<Value, String> {
    let convert = ToValue { names: &version.names };
    convert.value(json, &version.schema, version.full_name, true)
}

/// A `Value` read with `version`'s schema as Avro JSON.
pub fn from_value(value: &Value, version: &SchemaVersion) -> Result<Json, String> {
    from_value_at(value, &version.schema, &version.names, version.full_name)
}

/// The name a union branch goes by in the Avro JSON encoding.
pub fn type_name(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int | Schema::Date | Schema::TimeMillis => "int".into(),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes | Schema::BigDecimal | Schema::Decimal(_) => "bytes".into(),
        Schema::String | Schema::Uuid(_) => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Record(r) => r.name.fullname(None),
        Schema::Enum(e) => e.name.fullname(None),
        Schema::Fixed(f) | Schema::Duration(f) => f.name.fullname(None),
        Schema::Ref { name } => name.fullname(None),
    }
}

struct ToValue<'a> {
    names: &'a HashMap<String, Schema>,
}

impl ToValue<'_> {
    /// `wrapped`: unions are wrapped (a value) or not (a schema default, which takes the first branch).
    fn value(&self, json: &Json, schema: &Schema, path: &str, wrapped: bool) -> Result<Value, String> {
        let bad = |expected: &str| Err(format!("{path}: expected {expected}, got {json}"));
        match schema {
            Schema::Null => json.is_null().then_some(Value::Null).map_or_else(|| bad("null"), Ok),
            Schema::Boolean => json.as_bool().map_or_else(|| bad("a boolean"), |b| Ok(Value::Boolean(b))),
            Schema::Int => self.int(json, path).map(Value::Int),
            Schema::Date => self.int(json, path).map(Value::Date),
            Schema::TimeMillis => self.int(json, path).map(Value::TimeMillis),
            Schema::Long => self.long(json, path).map(Value::Long),
            Schema::TimeMicros => self.long(json, path).map(Value::TimeMicros),
            Schema::TimestampMillis => self.long(json, path).map(Value::TimestampMillis),
            Schema::TimestampMicros => self.long(json, path).map(Value::TimestampMicros),
            Schema::TimestampNanos => self.long(json, path).map(Value::TimestampNanos),
            Schema::LocalTimestampMillis => self.long(json, path).map(Value::LocalTimestampMillis),
            Schema::LocalTimestampMicros => self.long(json, path).map(Value::LocalTimestampMicros),
            Schema::LocalTimestampNanos => self.long(json, path).map(Value::LocalTimestampNanos),
            Schema::Float => json.as_f64().map_or_else(|| bad("a number"), |f| Ok(Value::Float(f as f32))),
            Schema::Double => json.as_f64().map_or_else(|| bad("a number"), |f| Ok(Value::Double(f))),
            Schema::String => json.as_str().map_or_else(|| bad("a string"), |s| Ok(Value::String(s.into()))),
            Schema::Bytes => latin1(json, path).map(Value::Bytes),
            Schema::Fixed(fixed) => {
                let bytes = latin1(json, path)?;
                if bytes.len() != fixed.size {
                    return Err(format!("{path}: expected {} bytes, got {}", fixed.size, bytes.len()));
                }
                Ok(Value::Fixed(fixed.size, bytes))
            }
            Schema::Enum(e) => {
                let symbol = json.as_str().ok_or_else(|| format!("{path}: expected a symbol, got {json}"))?;
                let index = e
                    .symbols
                    .iter()
                    .position(|s| s == symbol)
                    .ok_or_else(|| format!("{path}: {symbol:?} is not one of {}", e.symbols.join(", ")))?;
                Ok(Value::Enum(index as u32, symbol.into()))
            }
            Schema::Array(array) => {
                let items = json.as_array().ok_or_else(|| format!("{path}: expected an array, got {json}"))?;
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.value(item, &array.items, &format!("{path}[{i}]"), wrapped))
                    .collect::<Result<_, _>>()?;
                Ok(Value::Array(values))
            }
            Schema::Map(map) => {
                let entries = json.as_object().ok_or_else(|| format!("{path}: expected an object, got {json}"))?;
                let mut values = HashMap::with_capacity(entries.len());
                for (key, item) in entries {
                    values.insert(key.clone(), self.value(item, &map.types, &format!("{path}[{key:?}]"), wrapped)?);
                }
                Ok(Value::Map(values))
            }
            Schema::Union(union) => self.union(json, union, path, wrapped),
            Schema::Record(record) => self.record(json, record, path, wrapped),
            Schema::Ref { name } => {
                let full = name.fullname(None);
                let named = self.names.get(&full).ok_or_else(|| format!("{path}: unknown type {full}"))?;
                self.value(json, named, path, wrapped)
            }
            other => Err(format!("{path}: type {} is not supported by this converter", type_name(other))),
        }
    }

    fn int(&self, json: &Json, path: &str) -> Result<i32, String> {
        json.as_i64().and_then(|i| i32::try_from(i).ok()).ok_or_else(|| format!("{path}: expected an int, got {json}"))
    }

    fn long(&self, json: &Json, path: &str) -> Result<i64, String> {
        json.as_i64().ok_or_else(|| format!("{path}: expected a long, got {json}"))
    }

    fn union(&self, json: &Json, union: &UnionSchema, path: &str, wrapped: bool) -> Result<Value, String> {
        let variants = union.variants();
        if !wrapped {
            let first = variants.first().ok_or_else(|| format!("{path}: empty union"))?;
            return Ok(Value::Union(0, Box::new(self.value(json, first, path, false)?)));
        }
        if json.is_null() {
            let index = variants
                .iter()
                .position(|v| matches!(v, Schema::Null))
                .ok_or_else(|| format!("{path}: null, but the union has no null branch"))?;
            return Ok(Value::Union(index as u32, Box::new(Value::Null)));
        }
        let (branch, inner) = match json.as_object() {
            Some(obj) if obj.len() == 1 => obj.iter().next().expect("one entry"),
            _ => return Err(format!("{path}: a union value must be null or {{\"type name\": value}}, got {json}")),
        };
        let index = variants.iter().position(|v| &type_name(v) == branch).ok_or_else(|| {
            let known: Vec<_> = variants.iter().map(type_name).collect();
            format!("{path}: union has no branch {branch:?} (branches: {})", known.join(", "))
        })?;
        let value = self.value(inner, &variants[index], path, true)?;
        Ok(Value::Union(index as u32, Box::new(value)))
    }

    fn record(&self, json: &Json, record: &RecordSchema, path: &str, wrapped: bool) -> Result<Value, String> {
        let obj = json.as_object().ok_or_else(|| format!("{path}: expected an object, got {json}"))?;
        if let Some(unknown) = obj.keys().find(|k| !record.fields.iter().any(|f| &f.name == *k)) {
            return Err(format!("{path}: {} has no field {unknown:?}", record.name.fullname(None)));
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let at = format!("{path}.{}", field.name);
            let value = match (obj.get(&field.name), &field.default) {
                (Some(value), _) => self.value(value, &field.schema, &at, wrapped)?,
                (None, Some(default)) => self.value(default, &field.schema, &at, false)?,
                (None, None) => return Err(format!("{at}: missing, and the field has no default")),
            };
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }
}

fn latin1(json: &Json, path: &str) -> Result<Vec<u8>, String> {
    let text = json.as_str().ok_or_else(|| format!("{path}: expected a string of bytes, got {json}"))?;
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("{path}: {c:?} is not a byte (U+0000..U+00FF)")))
        .collect()
}

fn from_value_at(value: &Value, schema: &Schema, names: &HashMap<String, Schema>, path: &str) -> Result<Json, String> {
    if let Schema::Ref { name } = schema {
        let full = name.fullname(None);
        let named = names.get(&full).ok_or_else(|| format!("{path}: unknown type {full}"))?;
        return from_value_at(value, named, names, path);
    }
    let number = |f: f64| Number::from_f64(f).map(Json::Number).ok_or_else(|| format!("{path}: {f} has no JSON form"));
    Ok(match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => Json::from(*i),
        Value::Long(i)
        | Value::TimeMicros(i)
        | Value::TimestampMillis(i)
        | Value::TimestampMicros(i)
        | Value::TimestampNanos(i)
        | Value::LocalTimestampMillis(i)
        | Value::LocalTimestampMicros(i)
        | Value::LocalTimestampNanos(i) => Json::from(*i),
        Value::Float(f) => number(f64::from(*f))?,
        Value::Double(f) => number(*f)?,
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) | Value::Fixed(_, b) => Json::String(b.iter().map(|&b| char::from(b)).collect()),
        Value::Enum(_, symbol) => Json::String(symbol.clone()),
        Value::Union(index, inner) => {
            let Schema::Union(union) = schema else {
                return Err(format!("{path}: a union value where the schema is {}", type_name(schema)));
            };
            let branch = union.variants().get(*index as usize).ok_or_else(|| format!("{path}: no branch {index}"))?;
            match **inner {
                Value::Null => Json::Null,
                _ => {
                    let mut wrapped = Map::new();
                    wrapped.insert(type_name(branch), from_value_at(inner, branch, names, path)?);
                    Json::Object(wrapped)
                }
            }
        }
        Value::Array(items) => {
            let Schema::Array(array) = schema else { return Err(format!("{path}: unexpected array")) };
            Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| from_value_at(item, &array.items, names, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Value::Map(entries) => {
            let Schema::Map(map) = schema else { return Err(format!("{path}: unexpected map")) };
            let mut keys: Vec<_> = entries.keys().collect();
            keys.sort(); // HashMap order is random: sorted keys make the output stable
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), from_value_at(&entries[key], &map.types, names, &format!("{path}[{key:?}]"))?);
            }
            Json::Object(out)
        }
        Value::Record(fields) => {
            let Schema::Record(record) = schema else { return Err(format!("{path}: unexpected record")) };
            let mut out = Map::new();
            for ((name, item), field) in fields.iter().zip(&record.fields) {
                out.insert(name.clone(), from_value_at(item, &field.schema, names, &format!("{path}.{name}"))?);
            }
            Json::Object(out)
        }
        other => return Err(format!("{path}: value {other:?} is not supported by this converter")),
    })
}
