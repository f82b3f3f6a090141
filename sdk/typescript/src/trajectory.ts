// A trajectory handle: start, turns, end; `run` ends it with outcome error when its function throws.
import type { Emitter } from './emitter.js';
import {
  type EndOptions,
  type Message,
  type Outcome,
  type StartOptions,
  type TurnOptions,
  endRecord,
  newId,
  startRecord,
  turnRecord,
} from './events.js';
import { TRAJECTORY_END, TRAJECTORY_START, TURN } from './names.js';

export interface TrajectoryOptions extends Omit<StartOptions, 'scrub'> {
  trajectoryId?: string;
  /** The outcome `run` ends with when its function returns without calling `end`. Default: success. */
  defaultOutcome?: Outcome;
}

/** One attempt at one task. */
export class Trajectory {
  readonly trajectoryId: string;
  readonly agentId: string;
  readonly defaultOutcome: Outcome;
  turnCount = 0;
  started = false;
  ended = false;
  private readonly startFields: Omit<StartOptions, 'scrub'>;

  constructor(
    readonly emitter: Emitter,
    readonly taskDescription: string,
    options: TrajectoryOptions,
  ) {
    const { trajectoryId, defaultOutcome, ...startFields } = options;
    this.trajectoryId = trajectoryId ?? newId();
    this.agentId = options.agentId;
    this.defaultOutcome = defaultOutcome ?? 'success';
    this.startFields = startFields;
  }

  async start(): Promise<void> {
    if (this.started) return;
    const record = startRecord(this.trajectoryId, this.taskDescription, {
      ...this.startFields,
      scrub: this.emitter.redactor,
    });
    await this.emitter.emit(TRAJECTORY_START, record, { key: this.trajectoryId });
    this.started = true;
  }

  /** Publish one turn; returns its index. */
  async turn(messages: Iterable<Message>, options: Omit<TurnOptions, 'scrub'> = {}): Promise<number> {
    this.checkOpen();
    const index = this.turnCount;
    const record = turnRecord(this.trajectoryId, index, messages, { ...options, scrub: this.emitter.redactor });
    await this.emitter.emit(TURN, record, { key: this.trajectoryId });
    this.turnCount += 1;
    return index;
  }

  async end(outcome: Outcome, options: Omit<EndOptions, 'scrub' | 'turnCount'> = {}): Promise<void> {
    this.checkOpen();
    const record = endRecord(this.trajectoryId, outcome, {
      ...options,
      turnCount: this.turnCount,
      scrub: this.emitter.redactor,
    });
    await this.emitter.emit(TRAJECTORY_END, record, { key: this.trajectoryId });
    this.ended = true;
  }

  /**
   * Start, run `fn`, and end (the Python SDK's `async with`): with `defaultOutcome` when `fn` returns
   * without ending the trajectory, with outcome error when it throws (the error is then re-thrown).
   */
  async run<T>(fn: (trajectory: Trajectory) => Promise<T> | T): Promise<T> {
    await this.start();
    let result: T;
    try {
      result = await fn(this);
    } catch (err) {
      if (!this.ended) {
        await this.end('error', { errorType: errorType(err), errorMessage: errorMessage(err).slice(0, 2000) });
      }
      throw err;
    }
    if (!this.ended) await this.end(this.defaultOutcome);
    return result;
  }

  private checkOpen(): void {
    if (!this.started) throw new Error(`trajectory ${this.trajectoryId} has not started: use run() or start()`);
    if (this.ended) throw new Error(`trajectory ${this.trajectoryId} has already ended`);
  }
}

/** The error's class name, as Python's type(exc).__name__. */
function errorType(err: unknown): string {
  if (err instanceof Error) return err.constructor.name !== 'Error' ? err.constructor.name : err.name;
  return typeof err;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
