// @trajstream/sdk: publish agent trajectories (start, turns, end) and feedback to trajstream's Kafka topics.
export { SingleObjectCodec, type DecodedEvent } from './codec.js';
export { EmitterConfig, type EmitterConfigFields, type SecurityProtocol } from './config.js';
export { CONTRACT, type ContractVersion } from './contract.generated.js';
export { Emitter, type EmitterOptions, type EmitterStats } from './emitter.js';
export {
  CodecError,
  ConfigurationError,
  DeliveryError,
  EncodeError,
  EventTooLargeError,
  MalformedEventError,
  TrajstreamError,
  UnexpectedEventTypeError,
  UnknownSchemaError,
} from './errors.js';
export {
  Message,
  Redacted,
  Structured,
  Text,
  ToolCall,
  ToolResponse,
  Widget,
  endRecord,
  feedbackRecord,
  startRecord,
  turnRecord,
  type Content,
  type ContentKind,
  type EndOptions,
  type Entity,
  type Environment,
  type FeedbackOptions,
  type MessageOptions,
  type ModelInfo,
  type Outcome,
  type Redactor,
  type Resource,
  type Role,
  type StartOptions,
  type TokenLogprob,
  type ToolStatus,
  type TurnOptions,
} from './events.js';
export { Limits } from './limits.js';
export { EVENTS_TOPIC, FEEDBACK, FEEDBACK_TOPIC, TRAJECTORY_END, TRAJECTORY_START, TURN } from './names.js';
export { KafkaProducer, type EventProducer, type OutgoingRecord } from './producer.js';
export { chain, patternRedactor } from './redaction.js';
export { Trajectory, type TrajectoryOptions } from './trajectory.js';
