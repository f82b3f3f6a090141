-- Recall hydrates its hits' steps by trajectory id (issue 16). The sort key starts with the agent and the
-- day, so without an index on trajectory_id a lookup reads every granule of the hits' agents: 12 of 38
-- granules at 100k trajectories, 15 ms of a 20 ms budget. A bloom filter per granule skips the rest.
ALTER TABLE {db}.messages ADD INDEX IF NOT EXISTS messages_trajectory_id trajectory_id TYPE bloom_filter(0.01) GRANULARITY 1;
-- Rows landed before this migration: indexed now (a mutation, in the background on a server).
ALTER TABLE {db}.messages MATERIALIZE INDEX messages_trajectory_id;
