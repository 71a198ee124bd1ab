/**
 * @jest-environment node
 *
 * The typed service module: how a call reaches `{baseUrl}/jupyter-gov/api/` and how the
 * server's answers and failures come back. A real `Response` answers each call (Node's
 * fetch API), through JupyterLab's own `ServerConnection.makeSettings({ fetch })` seam.
 */
import { ServerConnection } from '@jupyterlab/services';

import {
  ApiError,
  apiURL,
  errorMessage,
  explainError,
  type IAuditPage,
  queryString,
  requestAPI
} from '../src/api';

/** Settings whose fetch records each request and answers with `answer()`. */
function server(answer: () => Response | Promise<Response>): {
  settings: ServerConnection.ISettings;
  requests: Request[];
} {
  const requests: Request[] = [];
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://lab.test/user/ana/',
    fetch: async (input: RequestInfo | URL, init?: RequestInit) => {
      requests.push(new Request(input, init));
      return answer();
    }
  });
  return { settings, requests };
}

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' }
  });

describe('queryString', () => {
  it('leaves out empty values and encodes the rest', () => {
    expect(
      queryString({
        user: 'ana b',
        text: '',
        limit: 50,
        since: null,
        x: undefined
      })
    ).toBe('user=ana%20b&limit=50');
  });

  it('is empty when no value is given', () => {
    expect(queryString({ text: '' })).toBe('');
  });
});

describe('apiURL', () => {
  it('puts the API under the server base URL', () => {
    const { settings } = server(() => json(200, {}));
    expect(apiURL('audit/stats', { bucket: 60 }, settings)).toBe(
      'http://lab.test/user/ana/jupyter-gov/api/audit/stats?bucket=60'
    );
  });
});

describe('requestAPI', () => {
  it('decodes the JSON answer of a GET with its query', async () => {
    const page: IAuditPage = { events: [], limit: 5, offset: 0, total: 0 };
    const { settings, requests } = server(() => json(200, page));
    await expect(
      requestAPI<IAuditPage>('audit', { limit: 5, user: '' }, {}, settings)
    ).resolves.toEqual(page);
    // JupyterLab adds a cache-buster to every GET (`&<time>`), which the server ignores.
    expect(requests.map(r => [r.method, r.url.replace(/&\d+$/, '')])).toEqual([
      ['GET', 'http://lab.test/user/ana/jupyter-gov/api/audit?limit=5']
    ]);
  });

  it('sends a POST body as given', async () => {
    const { settings, requests } = server(() => json(200, { id: 'a1' }));
    await requestAPI(
      'approvals/a1/approve',
      {},
      { method: 'POST', body: JSON.stringify({ comment: 'ok' }) },
      settings
    );
    expect(requests[0].method).toBe('POST');
    await expect(requests[0].json()).resolves.toEqual({ comment: 'ok' });
  });

  it("fails with the status and the server's one-sentence message", async () => {
    const { settings } = server(() =>
      json(503, { message: 'The audit store cannot be opened.' })
    );
    const failure = requestAPI('audit', {}, {}, settings);
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toMatchObject({
      status: 503,
      message: 'The audit store cannot be opened.'
    });
  });

  it('fails with the status line when the answer is not JSON', async () => {
    const { settings } = server(
      () =>
        new Response('<html>gateway</html>', {
          status: 502,
          statusText: 'Bad Gateway'
        })
    );
    await expect(requestAPI('policy', {}, {}, settings)).rejects.toMatchObject({
      status: 502,
      message: '502 Bad Gateway'
    });
  });

  it('fails with status 0 when the server cannot be reached', async () => {
    const { settings } = server(() => {
      throw new TypeError('fetch failed');
    });
    await expect(requestAPI('policy', {}, {}, settings)).rejects.toMatchObject({
      status: 0,
      message: 'The Jupyter server cannot be reached (TypeError: fetch failed).'
    });
  });

  it('answers null for an empty body', async () => {
    const { settings } = server(() => new Response(null, { status: 204 }));
    await expect(
      requestAPI('audit/verify', {}, {}, settings)
    ).resolves.toBeNull();
  });
});

describe('errorMessage', () => {
  it('prefers the message of a JSON error body', () => {
    expect(errorMessage(400, 'Bad Request', { message: 'Unknown tab.' })).toBe(
      'Unknown tab.'
    );
  });

  it('ignores a message that is not a string', () => {
    expect(errorMessage(400, 'Bad Request', { message: { html: '<b>' } })).toBe(
      '400 Bad Request'
    );
  });
});

describe('explainError', () => {
  it('says how to enable the server extension on a 404', () => {
    expect(explainError(new ApiError(404, 'Not Found'))).toMatch(
      /jupyter server extension enable jupyter_gov/
    );
  });

  it('asks to sign in again on a 403', () => {
    expect(explainError(new ApiError(403, 'Forbidden'))).toBe(
      'The server refused the request: sign in to Jupyter again.'
    );
  });

  it("passes any other failure's sentence through", () => {
    expect(explainError(new ApiError(500, 'The policy file is invalid.'))).toBe(
      'The policy file is invalid.'
    );
    expect(explainError(new Error('boom'))).toBe('Error: boom');
  });
});
