// Prints, as JSON {name: hex}, the single-object bytes of records the SDK's builders make from fixed
// inputs (event ids fixed after building, being random). tests/sdk/test_typescript.py builds the same
// records with the Python SDK's builders and compares the bytes: the two SDKs send the same records.
import {
  Message,
  Redacted,
  SingleObjectCodec,
  Structured,
  ToolCall,
  ToolResponse,
  Widget,
  endRecord,
  feedbackRecord,
  patternRedactor,
  startRecord,
  turnRecord,
} from '../src/index.js';

const T = 1_760_000_000_123;
const scrub = patternRedactor();
const codec = new SingleObjectCodec();
const fixed = (record: Record<string, unknown>) => ({ ...record, event_id: 'event-1' });

const records: Record<string, [string, Record<string, unknown>]> = {
  start_full: ['trajectory_start', startRecord('tid', 'Réfund order 42 for a@b.example', {
    agentId: 'bot', domain: 'billing', agentName: 'Bot', conversationId: 'conv', framework: 'node',
    environment: 'prod', tags: ['x', 'y'], parentTrajectoryId: 'ptid', parentSpanId: 'pspan', referrer: 'web',
    userId: 'u1', userAttributes: { plan: 'pro' }, entities: [{ name: 'ACME a@b.example', entityType: 'company' }, { name: 'B', entityId: 'b1' }],
    resources: [{ uri: 'file:///a' }, { uri: 'file:///b', kind: 'doc', description: 'd' }],
    customContext: { k: 'é', n: [1, 2.5, null] }, systemMessage: 'sys a@b.example', timestamp: T, scrub,
  })],
  start_minimal: ['trajectory_start', startRecord('tid', 'task', { agentId: 'bot', timestamp: new Date(T) })],
  turn_full: ['turn', turnRecord('tid', 3, [
    Message.text('user', 'hi a@b.example', { messageId: 'm0', timestamp: T, activeEntities: ['a@b.example'], availableTools: ['t1'] }),
    new Message('assistant', new ToolCall('refund', 'c1', { order: 42, note: 'ü' }), { messageId: 'm1', timestamp: T + 1, reasoning: 'why ✓' }),
    new Message('tool', new ToolResponse('refund', 'c1', 'plain ✓', 'timeout'), { messageId: 'm2', timestamp: T + 2 }),
    new Message('tool', new ToolResponse('refund', 'c1', '{"ok": true}'), { messageId: 'm3', timestamp: T + 3, sendToUser: false }),
    new Message('assistant', new Widget('card', { title: 'Refund' }), { messageId: 'm4', timestamp: T + 4 }),
    new Message('assistant', new Structured([1, 2.5, null, 'x']), { messageId: 'm5', timestamp: T + 5 }),
    new Message('assistant', new Redacted('pii', 'text'), { messageId: 'm6', timestamp: T + 6 }),
    new Message('assistant', new ToolCall('secret', 'c2', { ssn: 1 }), { messageId: 'm7', timestamp: T + 7, persist: false, reasoning: 'r', activeEntities: ['e'] }),
  ], {
    spanId: 'span-1', parentSpanId: 'parent', timestamp: T, durationMs: 12.7, error: true, errorType: 'X', turnReward: 0.25,
    model: { requestModel: 'gpt', responseModel: 'gpt-1', provider: 'openai', modelVersion: 'v3', inputTokens: 10,
      outputTokens: 20, responseId: 'r1', finishReason: 'stop', logprobs: [{ token: 'a', logprob: -0.5, tokenId: 7 }, { token: 'b', logprob: -1 }] },
    scrub,
  })],
  turn_minimal: ['turn', turnRecord('tid', 0, [], { spanId: 'span-0', timestamp: T })],
  end_full: ['trajectory_end', endRecord('tid', 'partial', {
    finalReward: 0.5, feedbackScore: 0.25, humanReviewed: true, turnCount: 4, errorType: 'E', errorMessage: 'failed for a@b.example', timestamp: T, scrub,
  })],
  end_minimal: ['trajectory_end', endRecord('tid', 'success', { timestamp: T })],
  feedback_full: ['feedback', feedbackRecord('tid', {
    source: 'reviewer', reward: 0.5, score: 0.75, humanReviewed: true, reviewer: 'ann', comment: 'call +1 415 555 0100', timestamp: T, scrub,
  })],
  feedback_minimal: ['feedback', feedbackRecord('tid', { timestamp: T })],
};

console.log(JSON.stringify(Object.fromEntries(
  Object.entries(records).map(([key, [name, record]]) => [key, codec.encode(name, fixed(record)).toString('hex')]),
)));
