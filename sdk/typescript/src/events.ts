// The event model: message contents and the builders of the four records an agent sends. Each builder
// returns the record the Python SDK's builder (trajstream_sdk/events.py) returns for the same arguments:
// the same field names and defaults, UUID event ids, timestamps in milliseconds since the epoch.
//
// Records are plain objects in avsc's form: `null | T` unions unwrapped, a message's content wrapped
// as `{"dev.trajstream.events.<Kind>": fields}` (the branch named, as Python's tuple notation names it).
import { randomBytes, randomUUID } from 'node:crypto';

export const NAMESPACE = 'dev.trajstream.events';

export type Role = 'system' | 'user' | 'assistant' | 'tool';
export type ToolStatus = 'success' | 'error' | 'timeout';
export type Outcome = 'success' | 'failure' | 'partial' | 'abandoned' | 'error';
export type Environment = 'prod' | 'staging' | 'dev';
export type ContentKind = 'text' | 'tool_call' | 'tool_response' | 'widget' | 'structured' | 'redacted';

/** A text scrubber (for PII) applied to every free-text field before encoding. */
export type Redactor = (text: string) => string;

const identity: Redactor = (text) => text;

/** A record in avsc's form. */
export type AvroRecord = Record<string, unknown>;

export function newId(): string {
  return randomUUID();
}

/** Milliseconds since the epoch, what timestamp-millis fields carry. */
export function nowMs(): number {
  return Date.now();
}

function millis(at: Date | number | undefined): number {
  if (at === undefined) return nowMs();
  return typeof at === 'number' ? Math.trunc(at) : at.getTime();
}

/**
 * Arguments and results travel as JSON documents; a string is taken as already-encoded JSON if it
 * parses. Written as Python's json.dumps writes it (compact separators, non-ASCII escaped as \uXXXX),
 * so that both SDKs send the same text for the same value.
 */
export function jsonText(value: unknown): string {
  if (typeof value === 'string') {
    try {
      JSON.parse(value);
      return value;
    } catch {
      return asciiJson(JSON.stringify(value));
    }
  }
  const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return asciiJson(text ?? 'null');
}

function asciiJson(text: string): string {
  return text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** One kind of message content; `toRecord` gives its branch of the content union. */
export interface Content {
  readonly kind: ContentKind;
  toRecord(scrub: Redactor): Record<string, AvroRecord>;
}

function branch(name: string, fields: AvroRecord): Record<string, AvroRecord> {
  return { [`${NAMESPACE}.${name}`]: fields };
}

export class Text implements Content {
  readonly kind = 'text' as const;
  constructor(readonly text: string) {}
  toRecord(scrub: Redactor) {
    return branch('TextContent', { text: scrub(this.text) });
  }
}

export class ToolCall implements Content {
  readonly kind = 'tool_call' as const;
  constructor(
    readonly name: string,
    readonly callId: string,
    readonly args: unknown = {},
  ) {}
  toRecord(scrub: Redactor) {
    return branch('ToolCall', { name: this.name, call_id: this.callId, arguments: scrub(jsonText(this.args)) });
  }
}

export class ToolResponse implements Content {
  readonly kind = 'tool_response' as const;
  constructor(
    readonly name: string,
    readonly callId: string,
    readonly result: unknown,
    readonly status: ToolStatus = 'success',
  ) {}
  toRecord(scrub: Redactor) {
    return branch('ToolResponse', {
      name: this.name,
      call_id: this.callId,
      status: this.status,
      result: scrub(jsonText(this.result)),
    });
  }
}

export class Widget implements Content {
  readonly kind = 'widget' as const;
  constructor(
    readonly widgetType: string,
    readonly data: unknown,
  ) {}
  toRecord(scrub: Redactor) {
    return branch('Widget', { widget_type: this.widgetType, data: scrub(jsonText(this.data)) });
  }
}

export class Structured implements Content {
  readonly kind = 'structured' as const;
  constructor(readonly data: unknown) {}
  toRecord(scrub: Redactor) {
    return branch('StructuredContent', { data: scrub(jsonText(this.data)) });
  }
}

/** A placeholder: the original content never leaves the process. */
export class Redacted implements Content {
  readonly kind = 'redacted' as const;
  constructor(
    readonly reason: string,
    readonly originalKind: string,
  ) {}
  toRecord(_scrub: Redactor) {
    return branch('RedactedContent', { reason: this.reason, original_kind: this.originalKind });
  }
}

export interface MessageOptions {
  /** The model's reasoning (chain of thought), when available. */
  reasoning?: string | null;
  sendToUser?: boolean;
  /** `false`: the message leaves the process only as a RedactedContent placeholder (reason "persist=false"). */
  persist?: boolean;
  activeEntities?: readonly string[];
  availableTools?: readonly string[];
  messageId?: string;
  timestamp?: Date | number;
}

/** One message of a turn. */
export class Message {
  readonly reasoning: string | null;
  readonly sendToUser: boolean;
  readonly persist: boolean;
  readonly activeEntities: readonly string[];
  readonly availableTools: readonly string[];
  readonly messageId: string;
  readonly timestamp: number;

  constructor(
    readonly role: Role,
    readonly content: Content,
    options: MessageOptions = {},
  ) {
    this.reasoning = options.reasoning ?? null;
    this.sendToUser = options.sendToUser ?? true;
    this.persist = options.persist ?? true;
    this.activeEntities = options.activeEntities ?? [];
    this.availableTools = options.availableTools ?? [];
    this.messageId = options.messageId ?? newId();
    this.timestamp = millis(options.timestamp);
  }

  static text(role: Role, text: string, options: MessageOptions = {}): Message {
    return new Message(role, new Text(text), options);
  }

  /** This message with its content replaced by a placeholder and its reasoning dropped. */
  redacted(reason: string): Message {
    return new Message(this.role, new Redacted(reason, this.content.kind), { ...this.options(), reasoning: null });
  }

  toRecord(scrub: Redactor = identity): AvroRecord {
    const msg = this.persist ? this : this.redacted('persist=false');
    const snapshot =
      msg.activeEntities.length > 0 || msg.availableTools.length > 0
        ? { active_entities: msg.activeEntities.map(scrub), available_tools: [...msg.availableTools] }
        : null;
    return {
      message_id: msg.messageId,
      role: msg.role,
      timestamp: msg.timestamp,
      content: msg.content.toRecord(scrub),
      reasoning: msg.reasoning !== null ? scrub(msg.reasoning) : null,
      visibility: { send_to_user: msg.sendToUser, persist: msg.persist },
      context_snapshot: snapshot,
    };
  }

  private options(): MessageOptions {
    return {
      reasoning: this.reasoning,
      sendToUser: this.sendToUser,
      persist: this.persist,
      activeEntities: this.activeEntities,
      availableTools: this.availableTools,
      messageId: this.messageId,
      timestamp: this.timestamp,
    };
  }
}

export interface TokenLogprob {
  token: string;
  logprob: number;
  tokenId?: number | null;
}

/** The model call behind a turn; field meanings follow the OTel GenAI conventions. */
export interface ModelInfo {
  requestModel?: string | null;
  responseModel?: string | null;
  provider?: string | null;
  modelVersion?: string | null;
  inputTokens?: number | null;
  outputTokens?: number | null;
  responseId?: string | null;
  finishReason?: string | null;
  logprobs?: readonly TokenLogprob[] | null;
}

export function modelRecord(model: ModelInfo): AvroRecord {
  return {
    request_model: model.requestModel ?? null,
    response_model: model.responseModel ?? null,
    provider: model.provider ?? null,
    model_version: model.modelVersion ?? null,
    input_tokens: model.inputTokens ?? null,
    output_tokens: model.outputTokens ?? null,
    response_id: model.responseId ?? null,
    finish_reason: model.finishReason ?? null,
    logprobs:
      model.logprobs != null
        ? model.logprobs.map((t) => ({ token: t.token, token_id: t.tokenId ?? null, logprob: t.logprob }))
        : null,
  };
}

export interface Entity {
  name: string;
  entityType?: string | null;
  entityId?: string | null;
}

export interface Resource {
  uri: string;
  kind?: string;
  description?: string | null;
}

export interface StartOptions {
  agentId: string;
  domain?: string;
  agentName?: string | null;
  conversationId?: string | null;
  framework?: string;
  environment?: Environment;
  tags?: readonly string[];
  parentTrajectoryId?: string | null;
  parentSpanId?: string | null;
  referrer?: string | null;
  userId?: string | null;
  userAttributes?: Readonly<Record<string, string>>;
  entities?: readonly Entity[];
  resources?: readonly Resource[];
  /** Any JSON value (or a JSON document as a string). */
  customContext?: unknown;
  systemMessage?: string | null;
  timestamp?: Date | number;
  scrub?: Redactor;
}

export function startRecord(trajectoryId: string, taskDescription: string, o: StartOptions): AvroRecord {
  const scrub = o.scrub ?? identity;
  return {
    event_id: newId(),
    trajectory_id: trajectoryId,
    timestamp: millis(o.timestamp),
    task_description: scrub(taskDescription),
    domain: o.domain ?? '',
    agent_id: o.agentId,
    agent_name: o.agentName ?? null,
    conversation_id: o.conversationId ?? null,
    framework: o.framework ?? '',
    environment: o.environment ?? 'dev',
    tags: [...(o.tags ?? [])],
    parent_trajectory_id: o.parentTrajectoryId ?? null,
    parent_span_id: o.parentSpanId ?? null,
    context: {
      referrer: o.referrer ?? null,
      user: o.userId ? { user_id: o.userId, attributes: { ...(o.userAttributes ?? {}) } } : null,
      entities: (o.entities ?? []).map((e) => ({
        name: scrub(e.name),
        entity_type: e.entityType ?? null,
        entity_id: e.entityId ?? null,
      })),
      resources: (o.resources ?? []).map((r) => ({ uri: r.uri, kind: r.kind ?? '', description: r.description ?? null })),
      custom: o.customContext !== undefined && o.customContext !== null ? scrub(jsonText(o.customContext)) : null,
    },
    system_message: o.systemMessage != null ? scrub(o.systemMessage) : null,
  };
}

export interface TurnOptions {
  spanId?: string | null;
  parentSpanId?: string | null;
  timestamp?: Date | number;
  durationMs?: number;
  error?: boolean;
  errorType?: string | null;
  turnReward?: number | null;
  model?: ModelInfo | null;
  scrub?: Redactor;
}

export function turnRecord(
  trajectoryId: string,
  turnIndex: number,
  messages: Iterable<Message>,
  o: TurnOptions = {},
): AvroRecord {
  const scrub = o.scrub ?? identity;
  return {
    event_id: newId(),
    trajectory_id: trajectoryId,
    turn_index: turnIndex,
    // Python's uuid4().hex[:16]: 16 hex digits, an OTel span id's width.
    span_id: o.spanId || randomBytes(8).toString('hex'),
    parent_span_id: o.parentSpanId ?? null,
    timestamp: millis(o.timestamp),
    duration_ms: Math.trunc(o.durationMs ?? 0),
    error: o.error ?? false,
    error_type: o.errorType ?? null,
    turn_reward: o.turnReward ?? null,
    model: o.model != null ? modelRecord(o.model) : null,
    messages: [...messages].map((m) => m.toRecord(scrub)),
  };
}

export interface EndOptions {
  finalReward?: number | null;
  feedbackScore?: number | null;
  humanReviewed?: boolean;
  turnCount?: number | null;
  errorType?: string | null;
  errorMessage?: string | null;
  timestamp?: Date | number;
  scrub?: Redactor;
}

export function endRecord(trajectoryId: string, outcome: Outcome, o: EndOptions = {}): AvroRecord {
  const scrub = o.scrub ?? identity;
  return {
    event_id: newId(),
    trajectory_id: trajectoryId,
    timestamp: millis(o.timestamp),
    outcome,
    final_reward: o.finalReward ?? null,
    feedback_score: o.feedbackScore ?? null,
    human_reviewed: o.humanReviewed ?? false,
    turn_count: o.turnCount ?? null,
    error_type: o.errorType ?? null,
    error_message: o.errorMessage != null ? scrub(o.errorMessage) : null,
  };
}

export interface FeedbackOptions {
  source?: string;
  reward?: number | null;
  score?: number | null;
  humanReviewed?: boolean;
  reviewer?: string | null;
  comment?: string | null;
  timestamp?: Date | number;
  scrub?: Redactor;
}

export function feedbackRecord(trajectoryId: string, o: FeedbackOptions = {}): AvroRecord {
  const scrub = o.scrub ?? identity;
  return {
    event_id: newId(),
    trajectory_id: trajectoryId,
    timestamp: millis(o.timestamp),
    source: o.source ?? 'user',
    reward: o.reward ?? null,
    score: o.score ?? null,
    human_reviewed: o.humanReviewed ?? false,
    reviewer: o.reviewer ?? null,
    comment: o.comment != null ? scrub(o.comment) : null,
  };
}
