/**
 * The server extension's REST API under `{baseUrl}/jupyter-gov/api/`, and its shapes.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The badge of an event, computed by the server from its decision. */
export type Category = 'allowed' | 'masked' | 'denied' | 'approval' | 'error';

/** One audit event; `id` is its position in the hash chain. */
export interface IAuditEvent {
  id: number;
  ts: number;
  kind: string;
  category: Category | null;
  subject: string | null;
  display_name: string | null;
  auth_method: string | null;
  verified: boolean | null;
  decision: string | null;
  rules: string[] | null;
  reasons: string[] | null;
  masked_columns: Record<string, string> | null;
  fingerprint: string | null;
  statement: string | null;
  statement_kind: string | null;
  rewritten_sql: string | null;
  rows: number | null;
  duration_ms: number | null;
  error: string | null;
  connection: string | null;
  query_id: string | null;
  policy_name: string | null;
  policy_hash: string | null;
  purpose: string | null;
  /** Part of a break-glass run (computed by the server). */
  break_glass?: boolean;
  hash: string;
  [key: string]: unknown;
}

export interface IAuditPage {
  events: IAuditEvent[];
  limit: number;
  offset: number;
  total: number;
}

export interface IVerifyReport {
  ok: boolean;
  rows: number;
  head: string;
  broken_at: number | null;
  reason: string;
}

export interface IStatsBucket {
  start: number;
  total: number;
  counts: Record<Category, number>;
}

export interface IStats {
  bucket: number;
  since: number;
  until: number;
  categories: Category[];
  buckets: IStatsBucket[];
}

/** What `GET policy` returns; `{}` when the server has no policy configured. */
export interface IPolicySummary {
  name?: string;
  version?: number;
  hash?: string;
  origin?: string;
  error?: string;
  identity_provider?: string;
  roles?: string[];
  role_details?: Record<
    string,
    {
      description?: string;
      access?: string;
      approve?: boolean;
      groups?: string[];
    }
  >;
  connections?: Record<string, { environment?: string; description?: string }>;
  masks?: Record<string, Record<string, string>>;
  row_filters?: { id: string; table: string; roles: string[] }[];
  approval_rules?: { id: string; description: string; approvers: string[] }[];
  /** What applies to the server's own identity. */
  you?: {
    subject?: string;
    display_name?: string;
    verified?: boolean;
    roles?: string[];
    masks?: Record<string, string>;
    approve?: string[];
    need_approval?: string[];
    error?: string;
  };
  /** Columns `unclassified: auto` found (present when there are any). */
  pii_findings?: IPiiFinding[];
}

/** One column PII detection found and nobody classified (the server reads it from the audit). */
export interface IPiiFinding {
  connection?: string | null;
  table: string;
  column: string;
  tag: string;
  confidence?: number | null;
  sample_size?: number | null;
  proposed?: boolean;
}

/** What `GET report?format=json` answers (the fields the sidebar's summary shows). */
export interface IReport {
  since: number;
  until: number;
  totals: Record<string, number>;
  chain: {
    ok: boolean;
    rows: number;
    reason: string;
    broken_at: number | null;
  };
  pii_reads: {
    subject: string;
    connection: string;
    tag: string;
    state: string;
    reads: number;
    rows: number;
  }[];
  denials: { rule: string; connection: string; attempts: number }[];
  unmask_approvals: unknown[];
  write_approvals: unknown[];
  break_glass: unknown[];
}

/**
 * An approval request as `GET approvals` gives it. `statement_text` (the exact SQL as
 * submitted) and `params` are present only when `can_decide` is true.
 */
export interface IApproval {
  id: string;
  state?: string;
  subject?: string;
  display_name?: string;
  requester?: string;
  requester_name?: string;
  /** The statement with its literals replaced by `?`. */
  statement?: string;
  statement_text?: string;
  params?: unknown;
  dry_run_rows?: number | null;
  row_limit?: number | null;
  justification?: string;
  break_glass?: boolean;
  can_decide?: boolean;
  connection?: string;
  rules?: string[];
  reasons?: string[];
  unmask?: string[];
  approvers?: string[];
  decided_by_name?: string | null;
  comment?: string | null;
  requested_at?: number;
  expires_at?: number;
  [key: string]: unknown;
}

/** One page of `GET approvals`; `total` and `actionable` count every match. */
export interface IApprovalsPage {
  approvals: IApproval[];
  total?: number;
  actionable?: number;
  limit?: number;
  offset?: number;
}

/** An error answer of the API, with the server's one-line message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
  }
}

/** Query parameters: empty values are left out. */
export type Params = Record<string, string | number | undefined | null>;

/** `a=1&b=x%20y` from `params`, leaving out empty values (`''` when none is left). */
export function queryString(params: Params): string {
  return Object.entries(params)
    .filter(
      ([, value]) => value !== undefined && value !== null && value !== ''
    )
    .map(
      ([key, value]) =>
        `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    )
    .join('&');
}

/**
 * The URL of `{baseUrl}/jupyter-gov/api/{path}?{params}`, also for links the browser
 * follows itself (it sends the session cookie).
 */
export function apiURL(
  path: string,
  params: Params = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const query = queryString(params);
  return (
    URLExt.join(settings.baseUrl, 'jupyter-gov', 'api', path) +
    (query ? `?${query}` : '')
  );
}

/** The one sentence the server gave for a failed answer, else its status line. */
export function errorMessage(
  status: number,
  statusText: string,
  body: unknown
): string {
  const message =
    body && typeof body === 'object'
      ? (body as { message?: unknown }).message
      : undefined;
  return typeof message === 'string' && message
    ? message
    : `${status} ${statusText}`;
}

/**
 * Call `{baseUrl}/jupyter-gov/api/{path}` and decode the JSON answer.
 *
 * @param settings the server connection (tests pass one with their own `fetch`).
 * @throws ApiError with the HTTP status (0 for a network failure) and the server's message.
 */
export async function requestAPI<T>(
  path: string,
  params: Params = {},
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = apiURL(path, params, settings);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(
      0,
      `The Jupyter server cannot be reached (${String(error)}).`
    );
  }
  const text = await response.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      errorMessage(response.status, response.statusText, body)
    );
  }
  return body as T;
}

/** One sentence for a panel from whatever failed. */
export function explainError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 404) {
      return (
        'The jupyter-gov server extension is not enabled on this Jupyter server ' +
        '(enable it with jupyter server extension enable jupyter_gov, then restart).'
      );
    }
    if (error.status === 403) {
      return 'The server refused the request: sign in to Jupyter again.';
    }
    return error.message;
  }
  return String(error);
}
