// Record names: the directory names under schemas/, as the Python SDK's schemas.py names them.
export const TRAJECTORY_START = 'trajectory_start';
export const TURN = 'turn';
export const TRAJECTORY_END = 'trajectory_end';
export const FEEDBACK = 'feedback';
export const DEAD_LETTER = 'dead_letter';
export const ASSEMBLED_TRAJECTORY = 'assembled_trajectory';
export const ENRICHMENT_REQUEST = 'enrichment_request';
export const SCORED_TRAJECTORY = 'scored_trajectory';
export const ASSEMBLY_STATE = 'assembly_state';
export const SCORING_STATE = 'scoring_state';

// Topics the emitter writes to, after TRAJSTREAM_TOPIC_PREFIX (the Python SDK's config.py).
export const EVENTS_TOPIC = 'events';
export const FEEDBACK_TOPIC = 'feedback';
