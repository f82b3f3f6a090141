// The emitter and the trajectory handle, over a producer that records what it is sent (no broker).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeliveryError, Emitter, EmitterConfig, Message, SingleObjectCodec, ToolCall } from '../src/index.js';
import { RecordingProducer } from './support.js';

const codec = new SingleObjectCodec();

function emitter(fields: ConstructorParameters<typeof EmitterConfig>[0] = {}, producer = new RecordingProducer()) {
  const config = new EmitterConfig({ topicPrefix: 'p.', producerLingerMs: 0, ...fields });
  return { producer, emitter: new Emitter({ config, producer, redactor: (t) => t.replaceAll('secret', '[x]') }) };
}

function decoded(producer: RecordingProducer) {
  return producer.records.map((r) => ({ topic: r.topic, key: r.key.toString(), ...codec.decode(r.value) }));
}

test('a trajectory sends start, turns and end in order, keyed by its id, to <prefix>events', async () => {
  const { producer, emitter: e } = emitter();
  await e.start();
  const t = e.trajectory('Refund order 42', { agentId: 'bot', domain: 'billing' });
  const result = await t.run(async (t) => {
    await t.turn([Message.text('user', 'refund 42, secret'), new Message('assistant', new ToolCall('refund', 'c1', { order: 42 }))]);
    await t.turn([Message.text('assistant', 'done')], { durationMs: 5 });
    return 'ok';
  });
  await e.feedback(t.trajectoryId, { reward: 1, comment: 'secret' });
  await e.close();
  assert.equal(result, 'ok');
  const events = decoded(producer);
  assert.deepEqual(events.map((ev) => [ev.topic, ev.name]), [
    ['p.events', 'trajectory_start'], ['p.events', 'turn'], ['p.events', 'turn'], ['p.events', 'trajectory_end'],
    ['p.feedback', 'feedback'],
  ]);
  assert.ok(events.every((ev) => ev.key === t.trajectoryId && ev.record.trajectory_id === t.trajectoryId));
  assert.deepEqual(events.slice(1, 3).map((ev) => ev.record.turn_index), [0, 1]);
  assert.equal(events[3]!.record.outcome, 'success');
  assert.equal(events[3]!.record.turn_count, 2);
  assert.equal(events[0]!.record.agent_id, 'bot');
  // The emitter's redactor is the hook every builder is given.
  assert.ok(!JSON.stringify(events).includes('secret'));
  assert.equal(events[4]!.record.comment, '[x]');
  assert.deepEqual(e.stats, { sent: 5, delivered: 5, failed: 0, maxInFlight: e.stats.maxInFlight });
  assert.ok(producer.disconnected);
});

test('an exception inside run ends the trajectory with outcome error and is re-thrown', async () => {
  const { producer, emitter: e } = emitter();
  await e.start();
  class ToolExploded extends Error {}
  const t = e.trajectory('task', { agentId: 'bot' });
  await assert.rejects(t.run(async (t) => {
    await t.turn([Message.text('user', 'go')]);
    throw new ToolExploded('boom');
  }), ToolExploded);
  await e.flush();
  const end = decoded(producer).at(-1)!;
  assert.equal(end.name, 'trajectory_end');
  assert.equal(end.record.outcome, 'error');
  assert.equal(end.record.error_type, 'ToolExploded');
  assert.equal(end.record.error_message, 'boom');
  assert.equal(end.record.turn_count, 1);
});

test('run without end uses defaultOutcome; an explicit end is not repeated', async () => {
  const { producer, emitter: e } = emitter();
  await e.run(async (e) => {
    await e.trajectory('a', { agentId: 'x', defaultOutcome: 'partial' }).run(async () => {});
    await e.trajectory('b', { agentId: 'x' }).run(async (t) => t.end('failure', { finalReward: -1 }));
  });
  const ends = decoded(producer).filter((ev) => ev.name === 'trajectory_end').map((ev) => ev.record.outcome);
  assert.deepEqual(ends, ['partial', 'failure']);
});

test('turns before start or after end are refused', async () => {
  const { emitter: e } = emitter();
  await e.start();
  const t = e.trajectory('task', { agentId: 'bot' });
  await assert.rejects(t.turn([]), /has not started/);
  await t.start();
  await t.end('success');
  await assert.rejects(t.turn([]), /already ended/);
  await assert.rejects(t.end('success'), /already ended/);
});

test('emitting before start is refused', async () => {
  const { emitter: e } = emitter();
  await assert.rejects(e.feedback('t', {}), /not started/);
});

test('at most sdkMaxBufferedEvents are accepted and not acknowledged: emit waits past that', async () => {
  const producer = new RecordingProducer();
  const { emitter: e } = emitter({ sdkMaxBufferedEvents: 3 }, producer);
  await e.start();
  producer.hold();
  let accepted = 0;
  const sends = Array.from({ length: 6 }, (_, i) => e.feedback(`t${i}`, {}).then(() => (accepted += 1)));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(accepted, 3);
  assert.equal(e.inFlight, 3);
  producer.open();
  await Promise.all(sends);
  await e.flush();
  assert.equal(accepted, 6);
  assert.equal(e.inFlight, 0);
  assert.equal(e.stats.maxInFlight, 3);
  // Order is kept across batches.
  assert.deepEqual(producer.records.map((r) => r.key.toString()), ['t0', 't1', 't2', 't3', 't4', 't5']);
});

test('a batch holds at most producerMaxBatchBytes (and always one event)', async () => {
  const { producer, emitter: e } = emitter({ producerMaxBatchBytes: 1 });
  await e.start();
  producer.hold();
  for (let i = 0; i < 3; i++) await e.feedback(`t${i}`, {});
  producer.open();
  await e.flush();
  assert.deepEqual(producer.batches.map((b) => b.length), [1, 1, 1]);
});

test('undelivered events are reported by flush (DeliveryError), once', async () => {
  const { producer, emitter: e } = emitter();
  await e.start();
  producer.fail = new Error('broker says no');
  await e.feedback('t', {});
  await assert.rejects(e.flush(), (err: Error) => err instanceof DeliveryError && /1 event\(s\).*broker says no/.test(err.message));
  assert.equal(e.stats.failed, 1);
  await e.flush();
  producer.fail = null;
  await e.feedback('t', {});
  await e.close();
  assert.equal(e.stats.delivered, 1);
});

test('close reports a failure and still disconnects', async () => {
  const { producer, emitter: e } = emitter();
  await e.start();
  producer.fail = new Error('gone');
  await e.feedback('t', {});
  await assert.rejects(e.close(), DeliveryError);
  assert.ok(producer.disconnected);
});
