// The kinds of tracking failure the process server tells apart (lib/sources/agent-source.ts maps
// them to the connector contract's errors). Pure: the wire protocol names them from here.

export type TrackingErrorName =
  | 'Error'
  | 'QuiesceError'
  | 'FrozenPointLostError'
  | 'DiskInUseError'
  // A point's copy-on-write store could not grow (its filesystem is full): the snapshot is invalid.
  | 'PointOverflowError';

/** A failure of the agent's tracking, sent to the process server with its kind. */
export class TrackingError extends Error {
  constructor(
    override readonly name: TrackingErrorName,
    message: string,
  ) {
    super(message);
  }
}
