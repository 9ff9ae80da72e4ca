// A small router: routes are data (method, OpenAPI-style path template), so the OpenAPI document
// can be checked against exactly what the server answers. The role each route needs is in
// api/access.ts, one table; a router is not built with a route that table lacks.
import type { IncomingMessage } from 'node:http';
import type { ControlContext } from '../operations/context';
import type { TokenInfo } from '../operations/tokens';
import { accessOf, checkAccessTable, type Access } from './access';
import { ApiError } from './errors';
import type { JsonObject } from './body';

export type Method = 'GET' | 'POST';

export interface ApiRequest {
  ctx: ControlContext;
  params: Record<string, string>;
  query: URLSearchParams;
  raw: IncomingMessage;
  /** Who is calling (undefined on public routes). */
  identity?: TokenInfo;
  /** The JSON body (an object; {} when empty), read on demand with the size cap. */
  body(): Promise<JsonObject>;
}

export interface ApiResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Sent as is instead of JSON (metrics, the dashboard); headers then carry its Content-Type. */
  text?: string;
}

export interface Route {
  method: Method;
  /** OpenAPI path template, e.g. /v1/machines/{name}. */
  path: string;
  handler(req: ApiRequest): Promise<ApiResponse> | ApiResponse;
}

export interface Match {
  route: Route;
  params: Record<string, string>;
  /** The role the route needs (api/access.ts), or public. */
  access: Access;
}

function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

export class Router {
  constructor(readonly routes: readonly Route[]) {
    checkAccessTable(routes);
  }

  /** The route for a request path (raw, still percent-encoded), or a 404 / 405 ApiError. */
  match(method: string, rawPath: string): Match {
    const parts = segments(rawPath);
    let pathKnown = false;
    for (const route of this.routes) {
      const params = matchTemplate(segments(route.path), parts);
      if (!params) continue;
      pathKnown = true;
      if (route.method === method)
        return { route, params, access: accessOf(route.method, route.path) as Access };
    }
    if (pathKnown) {
      const allowed = this.routes
        .filter((r) => matchTemplate(segments(r.path), parts))
        .map((r) => r.method)
        .join(', ');
      throw new ApiError(405, `${method} is not allowed here; use ${allowed}`, 'method-not-allowed', {
        Allow: allowed,
      });
    }
    throw new ApiError(404, `no route ${rawPath}; GET /openapi.json lists them`, 'not-found');
  }
}

function matchTemplate(template: string[], parts: string[]): Record<string, string> | undefined {
  if (template.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, t] of template.entries()) {
    const part = parts[i] as string;
    const name = /^\{(\w+)\}$/.exec(t)?.[1];
    if (name) {
      // Decoded per segment, so a workflow id with slashes travels as one %2F-encoded segment.
      try {
        params[name] = decodeURIComponent(part);
      } catch {
        return undefined;
      }
    } else if (t !== part) return undefined;
  }
  return params;
}
