// How long a worker may go silent in an activity before Temporal counts it dead and hands the
// activity (retried after its backoff) to another worker of its queue or to the restarted one.
// The rule for process servers, for the cloud applier's replication and recovery activities (drills,
// failovers, their clean-ups) and for end-protection's: each of them
// heartbeats on a 2-s timer that does not wait for block progress, and workers send heartbeats at
// most 2 s apart (activities/common/with-heartbeat.ts), so 10 s is five missed heartbeats: a
// slow, loaded worker is not taken for a dead one.
export const WORKER_HEARTBEAT_TIMEOUT = '10s';
