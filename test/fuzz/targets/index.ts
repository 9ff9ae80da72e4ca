// Every fuzz target, in the order reports list them.
import type { FuzzTarget } from '../harness';
import { httpBodyTarget } from './http-body';
import { nbdTarget } from './nbd';
import { qmpTarget } from './qmp';
import { segmentTarget } from './segment';

export const fuzzTargets: FuzzTarget[] = [segmentTarget, nbdTarget, qmpTarget, httpBodyTarget];
