// Emits trajectories to the real broker (only when TRAJSTREAM_KAFKA_BOOTSTRAP is set): tool calls with
// every status, a persist:false message, the redaction hook, an exception ending a trajectory, feedback.
// tests/sdk/test_typescript.py runs it, then lands the trajectories and checks what ClickHouse holds.
//
// The ids, by scenario, go to the file named by TRAJSTREAM_E2E_IDS_FILE (when set) and, as JSON, to the
// last line of stdout.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { Emitter, Message, Structured, ToolCall, ToolResponse, Widget, patternRedactor } from '../src/index.js';

const AGENT = 'ts-e2e';

test('emit trajectories to the broker', { skip: !process.env.TRAJSTREAM_KAFKA_BOOTSTRAP }, async () => {
  const emitter = await Emitter.connect({ redactor: patternRedactor(), clientId: 'trajstream-ts-e2e' });
  const ids: Record<string, string> = {};
  try {
    const refund = emitter.trajectory('Refund order 42 for a@b.example', { agentId: AGENT, domain: 'billing' });
    ids.refund = refund.trajectoryId;
    await refund.run(async (t) => {
      await t.turn(
        [
          Message.text('user', 'Refund order 42 for a@b.example'),
          new Message('assistant', new ToolCall('issue_refund', 'c1', { order: 42 }), { reasoning: 'policy allows it' }),
        ],
        { model: { requestModel: 'gpt-4o-mini', provider: 'openai', inputTokens: 12, outputTokens: 7 }, durationMs: 40 },
      );
      await t.turn([
        new Message('tool', new ToolResponse('issue_refund', 'c1', { ok: true })),
        new Message('assistant', new Widget('receipt', { order: 42 })),
        Message.text('assistant', 'Refunded order 42.'),
      ]);
      await t.end('success', { finalReward: 1 });
    });
    await emitter.feedback(ids.refund, { reward: 0.5, source: 'reviewer', comment: 'ok, reach me at a@b.example' });

    const privateTurn = emitter.trajectory('Tell me my balance', { agentId: AGENT, domain: 'banking' });
    ids.private = privateTurn.trajectoryId;
    await privateTurn.run(async (t) => {
      await t.turn([
        Message.text('user', 'What is my balance?'),
        new Message('assistant', new ToolCall('lookup_balance', 'c2', { account: 'A-1' })),
      ]);
      await t.turn([
        new Message('tool', new ToolResponse('lookup_balance', 'c2', { balance: 1234 }), { persist: false }),
        new Message('assistant', new Structured({ balance: 'hidden' })),
        Message.text('assistant', 'Your balance is on screen.'),
      ]);
    });

    const failing = emitter.trajectory('Fetch the report', { agentId: AGENT, domain: 'reports' });
    ids.failing = failing.trajectoryId;
    await assert.rejects(
      failing.run(async (t) => {
        await t.turn([
          Message.text('user', 'Fetch the report'),
          new Message('assistant', new ToolCall('fetch', 'c3', { id: 7 })),
          new Message('tool', new ToolResponse('fetch', 'c3', 'no answer', 'timeout')),
        ]);
        throw new Error('upstream timed out');
      }),
      /upstream timed out/,
    );

    // More keys, so that a partitioner that merely happens to agree on a few is caught.
    for (let i = 0; i < 5; i++) {
      const t = emitter.trajectory(`Batch task ${i}`, { agentId: AGENT, domain: 'batch' });
      ids[`batch${i}`] = t.trajectoryId;
      await t.run(async (t) => {
        await t.turn([Message.text('user', `task ${i}`), Message.text('assistant', `done ${i}`)]);
      });
    }
    await emitter.flush();
  } finally {
    await emitter.close();
  }
  assert.equal(emitter.stats.failed, 0);
  assert.equal(emitter.stats.delivered, emitter.stats.sent);
  const text = JSON.stringify(ids);
  if (process.env.TRAJSTREAM_E2E_IDS_FILE) writeFileSync(process.env.TRAJSTREAM_E2E_IDS_FILE, text);
  console.log(text);
});
