// The OpenAPI description of the job routes (api/jobs.ts): running OSR jobs and one job's
// status. Merged into api/openapi.ts's document.
import { JOB_KINDS } from '../shared/job-kinds';
import { common, error, json, listOf, ref, type Operation } from './openapi-common';

export const jobPaths: Record<string, Partial<Record<'get' | 'post', Operation>>> = {
  '/v1/jobs': {
    get: {
      operationId: 'listJobs',
      summary: 'running OSR workflows (OsrJobKind / OsrMachine search attributes)',
      tags: ['jobs'],
      parameters: [
        {
          name: 'machine',
          in: 'query',
          required: false,
          description: 'only this machine',
          schema: { type: 'string' },
        },
        {
          name: 'kind',
          in: 'query',
          required: false,
          description: 'only this kind',
          schema: { enum: [...JOB_KINDS] },
        },
      ],
      responses: {
        '200': {
          description: 'jobs, newest first',
          ...listOf('jobs', 'Job'),
        },
        ...common,
      },
    },
  },
  '/v1/jobs/{workflowId}': {
    get: {
      operationId: 'jobStatus',
      summary: "a job and its progress (the answer of the workflow's status query)",
      tags: ['jobs'],
      parameters: [
        {
          name: 'workflowId',
          in: 'path',
          required: true,
          description: 'the workflow id, percent-encoded (drill%2Fweb-1%2F20261125T071800000Z)',
          schema: { type: 'string' },
        },
      ],
      responses: {
        '200': {
          description: 'the job',
          ...json({
            allOf: [
              ref('Job'),
              {
                type: 'object',
                properties: {
                  progress: { oneOf: [ref('MachineStatus'), ref('RecoveryStatus')] },
                  note: { type: 'string' },
                },
              },
            ],
          }),
        },
        ...common,
        '404': error('no OSR job with that id'),
      },
    },
  },
};
