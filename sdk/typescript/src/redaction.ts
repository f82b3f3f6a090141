// Redaction hooks: text scrubbers that run on every free-text field before an event is encoded.
// The same patterns as the Python SDK's trajstream_sdk/redaction.py.
import type { Redactor } from './events.js';

// Conservative patterns: a false positive costs a little context, a false negative leaks PII.
export const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g;
export const PHONE = /(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)/g;
export const CARD = /(?<!\d)(?:\d[ -]?){13,19}(?!\d)/g;
export const IPV4 = /(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])/g;

export const DEFAULT_PATTERNS: readonly (readonly [string, RegExp])[] = [
  ['EMAIL', EMAIL],
  ['CARD', CARD],
  ['PHONE', PHONE],
  ['IP', IPV4],
];

/** A redactor that replaces each match with `[REDACTED:<LABEL>]`. */
export function patternRedactor(patterns: readonly (readonly [string, RegExp])[] = DEFAULT_PATTERNS): Redactor {
  const compiled = patterns.map(
    ([label, re]) => [label, new RegExp(re.source, re.flags.includes('g') ? re.flags : `${re.flags}g`)] as const,
  );
  return (text) => compiled.reduce((out, [label, re]) => out.replace(re, `[REDACTED:${label}]`), text);
}

/** Apply each redactor in turn. */
export function chain(...redactors: Redactor[]): Redactor {
  return (text) => redactors.reduce((out, r) => r(out), text);
}
