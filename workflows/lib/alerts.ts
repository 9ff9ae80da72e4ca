// Alerts of entity workflows: a capped list (the newest MAX_ALERTS), and for protected machines one
// standing alert per problem that a recurrence folds into (count, last time, latest message).
import type { Alert } from '../../shared/contracts/protect-machine';

export const MAX_ALERTS = 50;

/** Appends `item`, dropping the oldest entries beyond `max`. */
export function pushCapped<T>(list: T[], item: T, max = MAX_ALERTS): void {
  list.push(item);
  if (list.length > max) list.splice(0, list.length - max);
}

/** Where folding alerts live: the list and the sequence their ids are numbered by. */
export interface AlertBook {
  alerts: Alert[];
  alertSeq: number;
}

/**
 * One alert per problem: a problem seen again (same kind, same subject where it names one) updates
 * the standing alert (count, last time, latest message, worst severity) instead of adding one.
 */
export function raiseAlert(
  book: AlertBook,
  idPrefix: string,
  at: string,
  alert: Pick<Alert, 'kind' | 'severity' | 'message' | 'subject'>,
): void {
  const { kind, severity, message, subject } = alert;
  const standing = book.alerts.find((a) => a.kind === kind && a.subject === subject);
  if (standing) {
    standing.count = (standing.count ?? 1) + 1;
    standing.lastAt = at;
    standing.message = message;
    if (severity === 'critical') standing.severity = 'critical';
    return;
  }
  book.alertSeq += 1;
  pushCapped(book.alerts, { id: `${idPrefix}-${book.alertSeq}`, at, severity, kind, message, subject });
}

/** Removes every alert of `kind`: the problem is resolved. */
export function clearAlerts(book: AlertBook, kind: Alert['kind']): void {
  book.alerts = book.alerts.filter((a) => a.kind !== kind);
}
