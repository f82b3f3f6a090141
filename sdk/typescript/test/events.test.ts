// The record builders: the records the Python SDK's builders produce, and records that encode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Message,
  Redacted,
  SingleObjectCodec,
  Structured,
  Text,
  ToolCall,
  ToolResponse,
  Widget,
  endRecord,
  feedbackRecord,
  patternRedactor,
  startRecord,
  turnRecord,
} from '../src/index.js';
import { jsonText } from '../src/events.js';

const codec = new SingleObjectCodec();
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function roundTrip(name: string, record: Record<string, unknown>) {
  const decoded = codec.decode(codec.encode(name, record), name);
  return JSON.parse(JSON.stringify(decoded.record)) as Record<string, any>;
}

const everyKind = () => [
  new Message('system', new Text('be brief'), { activeEntities: ['order 42'], availableTools: ['refund'] }),
  new Message('assistant', new ToolCall('refund', 'c1', { order: 42 }), { reasoning: 'the user asked' }),
  new Message('tool', new ToolResponse('refund', 'c1', { ok: true }, 'error')),
  new Message('assistant', new Widget('card', { title: 'Refund' })),
  new Message('assistant', new Structured([1, 2])),
  new Message('assistant', new Redacted('pii', 'text')),
];

test('a turn with every content kind encodes and reads back as built', () => {
  const record = turnRecord('t-1', 3, everyKind(), {
    durationMs: 12.7,
    error: true,
    errorType: 'Timeout',
    turnReward: 0.5,
    parentSpanId: 'p1',
    model: { requestModel: 'gpt', provider: 'openai', inputTokens: 10, logprobs: [{ token: 'a', logprob: -0.1 }] },
  });
  const back = roundTrip('turn', record);
  assert.equal(back.turn_index, 3);
  assert.equal(back.duration_ms, 12);
  assert.match(back.event_id, UUID);
  assert.match(back.span_id, /^[0-9a-f]{16}$/);
  assert.equal(back.parent_span_id, 'p1');
  assert.equal(typeof back.timestamp, 'number');
  assert.ok(Math.abs(back.timestamp - Date.now()) < 60_000);
  assert.deepEqual(back.model, {
    request_model: 'gpt', response_model: null, provider: 'openai', model_version: null, input_tokens: 10,
    output_tokens: null, response_id: null, finish_reason: null, logprobs: [{ token: 'a', token_id: null, logprob: -0.1 }],
  });
  const contents = back.messages.map((m: any) => m.content);
  assert.deepEqual(contents, [
    { 'dev.trajstream.events.TextContent': { text: 'be brief' } },
    { 'dev.trajstream.events.ToolCall': { name: 'refund', call_id: 'c1', arguments: '{"order":42}' } },
    { 'dev.trajstream.events.ToolResponse': { name: 'refund', call_id: 'c1', status: 'error', result: '{"ok":true}' } },
    { 'dev.trajstream.events.Widget': { widget_type: 'card', data: '{"title":"Refund"}' } },
    { 'dev.trajstream.events.StructuredContent': { data: '[1,2]' } },
    { 'dev.trajstream.events.RedactedContent': { reason: 'pii', original_kind: 'text' } },
  ]);
  assert.deepEqual(back.messages[0].context_snapshot, { active_entities: ['order 42'], available_tools: ['refund'] });
  assert.equal(back.messages[1].context_snapshot, null);
  assert.equal(back.messages[1].reasoning, 'the user asked');
  assert.deepEqual(back.messages[0].visibility, { send_to_user: true, persist: true });
});

test('a persist:false message leaves only a RedactedContent placeholder, as Message.to_record does', () => {
  const secret = new Message('assistant', new ToolCall('lookup', 'c9', { ssn: '123' }), {
    persist: false,
    reasoning: 'secret reasoning',
    sendToUser: false,
    activeEntities: ['a@b.example'],
  });
  const record = secret.toRecord();
  assert.deepEqual(record.content, {
    'dev.trajstream.events.RedactedContent': { reason: 'persist=false', original_kind: 'tool_call' },
  });
  assert.equal(record.reasoning, null);
  assert.deepEqual(record.visibility, { send_to_user: false, persist: false });
  assert.equal(record.message_id, secret.messageId);
  assert.ok(!JSON.stringify(record).includes('123') && !JSON.stringify(record).includes('secret reasoning'));
  roundTrip('turn', turnRecord('t', 0, [secret]));
});

test('the redaction hook runs on every free-text field, as the Python scrub does', () => {
  const scrub = patternRedactor();
  const turn = turnRecord('t', 0, [
    Message.text('user', 'mail me at a@b.example', { reasoning: 'call +1 415 555 0100', activeEntities: ['a@b.example'] }),
    new Message('assistant', new ToolCall('mail', 'c', { to: 'a@b.example' })),
    new Message('tool', new ToolResponse('mail', 'c', 'sent to a@b.example')),
  ], { scrub });
  const text = JSON.stringify(turn);
  assert.ok(!text.includes('a@b.example'), text);
  assert.ok(text.includes('[REDACTED:EMAIL]') && text.includes('[REDACTED:PHONE]'));
  const start = startRecord('t', 'help a@b.example', { agentId: 'a', systemMessage: 'a@b.example', customContext: { e: 'a@b.example' }, entities: [{ name: 'a@b.example' }], scrub });
  const end = endRecord('t', 'error', { errorMessage: 'a@b.example failed', scrub });
  const feedback = feedbackRecord('t', { comment: 'a@b.example', scrub });
  for (const r of [start, end, feedback]) assert.ok(!JSON.stringify(r).includes('a@b.example'), JSON.stringify(r));
});

test('start, end and feedback records have the Python builders\' defaults and encode', () => {
  const start = startRecord('t-1', 'Refund order 42', { agentId: 'bot' });
  assert.deepEqual({ ...start, event_id: 'x', timestamp: 0 }, {
    event_id: 'x', trajectory_id: 't-1', timestamp: 0, task_description: 'Refund order 42', domain: '', agent_id: 'bot',
    agent_name: null, conversation_id: null, framework: '', environment: 'dev', tags: [], parent_trajectory_id: null,
    parent_span_id: null, context: { referrer: null, user: null, entities: [], resources: [], custom: null },
    system_message: null,
  });
  const full = startRecord('t-1', 'task', {
    agentId: 'bot', domain: 'billing', agentName: 'Bot', conversationId: 'c', framework: 'node', environment: 'prod',
    tags: ['x'], parentTrajectoryId: 'p', parentSpanId: 's', referrer: 'web', userId: 'u1', userAttributes: { plan: 'pro' },
    entities: [{ name: 'ACME', entityType: 'company' }], resources: [{ uri: 'file:///a' }], customContext: { k: 1 },
    systemMessage: 'sys', timestamp: new Date(1_760_000_000_123),
  });
  const back = roundTrip('trajectory_start', full);
  assert.equal(back.timestamp, 1_760_000_000_123);
  assert.deepEqual(back.context, {
    referrer: 'web', user: { user_id: 'u1', attributes: { plan: 'pro' } },
    entities: [{ name: 'ACME', entity_type: 'company', entity_id: null }],
    resources: [{ uri: 'file:///a', kind: '', description: null }], custom: '{"k":1}',
  });
  roundTrip('trajectory_start', start);
  const end = endRecord('t-1', 'success', { finalReward: 1, turnCount: 2 });
  assert.deepEqual({ ...roundTrip('trajectory_end', end), event_id: 'x', timestamp: 0 }, {
    event_id: 'x', trajectory_id: 't-1', timestamp: 0, outcome: 'success', final_reward: 1, feedback_score: null,
    human_reviewed: false, turn_count: 2, error_type: null, error_message: null,
  });
  const feedback = feedbackRecord('t-1', { reward: 0.5 });
  assert.deepEqual({ ...roundTrip('feedback', feedback), event_id: 'x', timestamp: 0 }, {
    event_id: 'x', trajectory_id: 't-1', timestamp: 0, source: 'user', reward: 0.5, score: null, human_reviewed: false,
    reviewer: null, comment: null,
  });
});

test('JSON documents are written as Python json.dumps writes them', () => {
  assert.equal(jsonText({ a: [1, 'é'], b: null }), '{"a":[1,"\\u00e9"],"b":null}');
  assert.equal(jsonText('{"already": "json"}'), '{"already": "json"}');
  assert.equal(jsonText('plain text ✓'), '"plain text \\u2713"');
  assert.equal(jsonText('😀'), '"\\ud83d\\ude00"');
});

test('a record that does not fit its schema is refused with the field named', () => {
  const record = turnRecord('t', 0, []);
  record.turn_index = 'three';
  assert.throws(() => codec.encode('turn', record), (err: Error) => err.name === 'EncodeError' && err.message.includes('turn_index'));
});

test('an event over TRAJSTREAM_MAX_EVENT_BYTES is refused', async () => {
  const { Limits } = await import('../src/index.js');
  const small = new SingleObjectCodec(new Limits(1024, 8192));
  const record = turnRecord('t', 0, [Message.text('user', 'x'.repeat(2000))]);
  assert.throws(() => small.encode('turn', record), /over the limit of 1024 \(TRAJSTREAM_MAX_EVENT_BYTES\)/);
});
