// What the per-noun parts of the OpenAPI document (api/openapi-*.ts) share: types, references,
// parameters and the common error responses.
export type Schema = Record<string, unknown>;

export interface Parameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  description: string;
  schema: Schema;
}

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: { 'application/json': { schema: Schema } } };
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema: Schema }>; headers?: Record<string, unknown> }
  >;
}

export const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: Schema) => ({ content: { 'application/json': { schema } } });
/** A JSON body holding one list: `{ [key]: item[] }`. */
export const listOf = (key: string, item: string) =>
  json({ type: 'object', properties: { [key]: { type: 'array', items: ref(item) } } });
export const body = (schema: Schema, required = true) => ({
  required,
  content: { 'application/json': { schema } } as const,
});
export const error = (description: string) => ({ description, ...json(ref('Error')) });
/** A property in `object()`: a type name, 'date-time' (an ISO time string), or a schema of its own. */
export type Property = 'string' | 'integer' | 'number' | 'boolean' | 'date-time' | Schema;
const property = (p: Property): Schema =>
  typeof p !== 'string' ? p : p === 'date-time' ? { type: 'string', format: 'date-time' } : { type: p };
/** An object schema from its properties, written short: `object({ name: 'string', at: 'date-time' })`. */
export function object(properties: Record<string, Property>, description?: string): Schema {
  return {
    type: 'object',
    ...(description === undefined ? {} : { description }),
    properties: Object.fromEntries(Object.entries(properties).map(([k, p]) => [k, property(p)])),
  };
}
/** A request body's object: only the named properties are allowed. */
export function closedObject(properties: Record<string, Schema>, required?: string[]): Schema {
  return {
    type: 'object',
    additionalProperties: false,
    ...(required === undefined ? {} : { required }),
    properties,
  };
}
/** An array of objects whose fields the document does not spell out. */
export const objects: Schema = { type: 'array', items: { type: 'object' } };

export const machineName: Parameter = {
  name: 'name',
  in: 'path',
  required: true,
  description: 'machine name (lower-case letters, digits, dashes)',
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' },
};

/** The refusals every authenticated route may answer with. */
export const common = {
  '400': error('bad body or field; the message names the field and the fix'),
  '401': error('no or wrong bearer token (WWW-Authenticate: Bearer)'),
  '503': error('Temporal or storage unavailable'),
};
export const machineErrors = { ...common, '404': error('no such machine (or point)') };
export const conflict = { '409': error("the operation cannot run in the machine's current state") };

export const point = {
  type: 'string',
  description:
    'latest (default), latest-app, a point id, an ISO time (newest point at or before it), or group:<group>[/<group point id>] (the member point of a consistency group point)',
};

export function machineAction(
  operationId: string,
  summary: string,
  extra: Partial<Operation> = {},
): Operation {
  return {
    operationId,
    summary,
    tags: ['machines'],
    parameters: [machineName],
    responses: {
      '200': { description: 'the machine status after the action', ...json(ref('MachineStatus')) },
      ...machineErrors,
      ...conflict,
    },
    ...extra,
  };
}

export const planName: Parameter = { ...machineName, description: 'plan name' };
export const groupName: Parameter = { ...machineName, description: 'consistency group name' };
export const planJobId: Parameter = {
  name: 'job',
  in: 'path',
  required: true,
  description: 'the plan job id, its workflow id (percent-encoded), or for commit the plan name',
  schema: { type: 'string' },
};

export function planJobStart(operationId: string, summary: string, properties: Schema): Operation {
  return {
    operationId,
    summary,
    tags: ['plans'],
    parameters: [planName],
    requestBody: body({ type: 'object', properties }, false),
    responses: {
      '202': {
        description: 'started; follow the Location (/v1/jobs/{workflowId})',
        ...json(ref('PlanJob')),
      },
      ...common,
      '404': error('no such plan (or point)'),
      ...conflict,
    },
  };
}

/** What a machine's and a group's status both end with: alerts, counters, and the back-off state. */
export const cycleHealth: Schema = {
  alerts: { type: 'array', items: { type: 'object' } },
  stats: { type: 'object' },
  failing: {
    type: 'object',
    description:
      'present while cycles keep failing: they back off (doubling, capped at 60 s) until one succeeds',
    properties: {
      since: { type: 'string', format: 'date-time' },
      failures: { type: 'integer' },
      reason: { type: 'string' },
      sourceUnreachable: { type: 'boolean' },
      retryAt: { type: 'string', format: 'date-time' },
    },
  },
};

/** 202 of every route that starts a machine's protection (hosts, agents, machines). */
export const protectionStarted = {
  description: 'protection started: follow it at the Location',
  ...json(
    closedObject({
      machine: { type: 'string' },
      workflowId: { type: 'string' },
      location: { type: 'string' },
    }),
  ),
};
