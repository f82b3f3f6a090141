// Record sizes, derived from the same two knobs as the Python SDK (trajstream_sdk/limits.py):
// the largest event (TRAJSTREAM_MAX_EVENT_BYTES) and the largest trajectory (TRAJSTREAM_ASSEMBLY_MAX_BYTES).
import { ConfigurationError } from './errors.js';
import { ASSEMBLED_TRAJECTORY, ASSEMBLY_STATE, DEAD_LETTER, ENRICHMENT_REQUEST, SCORED_TRAJECTORY, SCORING_STATE } from './names.js';

const MiB = 1024 * 1024;
export const DEFAULT_MAX_EVENT_BYTES = 1 * MiB;
export const DEFAULT_MAX_TRAJECTORY_BYTES = 8 * MiB;
const FRAMING_BYTES = 64 * 1024;
const KAFKA_FRAMING_BYTES = 4 * 1024;

// Records that carry a whole trajectory may be as large as a record can be; the rest are held to the event limit.
const TRAJECTORY_RECORDS = new Set([ASSEMBLED_TRAJECTORY, ENRICHMENT_REQUEST, SCORED_TRAJECTORY, ASSEMBLY_STATE, SCORING_STATE]);

export class Limits {
  constructor(
    readonly maxEventBytes: number = DEFAULT_MAX_EVENT_BYTES,
    readonly maxTrajectoryBytes: number = DEFAULT_MAX_TRAJECTORY_BYTES,
  ) {
    if (maxEventBytes < 1024) {
      throw new ConfigurationError(`TRAJSTREAM_MAX_EVENT_BYTES=${maxEventBytes}: at least 1024`);
    }
    if (maxTrajectoryBytes < maxEventBytes) {
      // A trajectory holds at least one event: a smaller limit would refuse every trajectory.
      throw new ConfigurationError(
        `TRAJSTREAM_ASSEMBLY_MAX_BYTES=${maxTrajectoryBytes} is below TRAJSTREAM_MAX_EVENT_BYTES=${maxEventBytes}`,
      );
    }
  }

  get deadLetterPayloadBytes(): number {
    return 2 * this.maxEventBytes;
  }

  get deadLetterBytes(): number {
    return this.deadLetterPayloadBytes + FRAMING_BYTES;
  }

  get recordBytes(): number {
    return this.maxTrajectoryBytes + 2 * this.maxEventBytes + FRAMING_BYTES;
  }

  /** The largest Kafka message: the broker's and the topics' limit. */
  get messageBytes(): number {
    return this.recordBytes + KAFKA_FRAMING_BYTES;
  }

  /** The largest encoding of record `name` the codec writes, and what sets it (for errors). */
  encodedBytes(name: string): [number, string] {
    if (TRAJECTORY_RECORDS.has(name)) {
      return [this.recordBytes, 'TRAJSTREAM_ASSEMBLY_MAX_BYTES + 2 x TRAJSTREAM_MAX_EVENT_BYTES + 64 KiB'];
    }
    if (name === DEAD_LETTER) return [this.deadLetterBytes, '2 x TRAJSTREAM_MAX_EVENT_BYTES + 64 KiB'];
    return [this.maxEventBytes, 'TRAJSTREAM_MAX_EVENT_BYTES'];
  }
}
