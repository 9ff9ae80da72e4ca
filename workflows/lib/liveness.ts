// How long a process server may go silent in an activity before Temporal counts it dead and hands
// the activity (retried after its backoff) to another process server of the site or to the
// restarted one. Every process-server activity heartbeats on a 2-s timer that does not wait for
// block progress, and workers send heartbeats at most 2 s apart (activities/common/with-heartbeat.ts),
// so 10 s is five missed heartbeats: a slow, loaded worker is not taken for a dead one.
export const PROCESS_SERVER_HEARTBEAT_TIMEOUT = '10s';
