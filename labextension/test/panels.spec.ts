/**
 * The sidebar's pure parts: what the Report and Policy tabs draw from an answer, the tab
 * that loads one answer, the poll frequency, and the DOM helpers' rule that a server's
 * string is never markup and never hides a character.
 */
import { ApiError, type IPolicySummary, type IReport } from '../src/api';
import { h, reveal } from '../src/dom';
import { LoadedPanel, pollFrequency } from '../src/panel';
import { PolicyPanel } from '../src/policy';
import { ReportPanel } from '../src/report';

/** A container holding `nodes`, to query what a `render` drew. */
function drawn(nodes: Node[]): HTMLElement {
  return h('div', {}, ...nodes);
}

const byTestId = (root: HTMLElement, id: string): HTMLElement | null =>
  root.querySelector(`[data-testid="${id}"]`);

function report(overrides: Partial<IReport> = {}): IReport {
  return {
    since: 0,
    until: 1,
    totals: { statements: 12, denied: 3 },
    chain: { ok: true, rows: 40, reason: '', broken_at: null },
    pii_reads: [],
    denials: [],
    unmask_approvals: [{}],
    write_approvals: [],
    break_glass: [{}, {}],
    ...overrides
  };
}

describe('ReportPanel.render', () => {
  it('says the chain is intact with the number of events verified', () => {
    const root = drawn(ReportPanel.render(report()));
    const chain = byTestId(root, 'report-chain')!;
    expect(chain.textContent).toBe('Chain intact: 40 events verified.');
    expect(chain.classList.contains('jp-gov-ok')).toBe(true);
  });

  it('names the event where a broken chain breaks, and why', () => {
    const broken = report({
      chain: { ok: false, rows: 40, reason: 'hash mismatch', broken_at: 17 }
    });
    const chain = byTestId(drawn(ReportPanel.render(broken)), 'report-chain')!;
    expect(chain.textContent).toBe('Chain BROKEN at event 17: hash mismatch');
    expect(chain.classList.contains('jp-gov-bad')).toBe(true);
  });

  it('shows the totals and the number of each kind of approval', () => {
    const root = drawn(ReportPanel.render(report()));
    const figure = (label: string) =>
      root.querySelector(`[data-figure="${label}"]`)?.textContent;
    expect(figure('statements')).toBe('12');
    expect(figure('denied')).toBe('3');
    expect(figure('unmasking approvals')).toBe('1');
    expect(figure('write approvals')).toBe('0');
    expect(figure('break-glass')).toBe('2');
  });

  it('sums classified reads per tag and state, most read first', () => {
    const row = { subject: 'ana', connection: 'demo', rows: 1 };
    const root = drawn(
      ReportPanel.render(
        report({
          pii_reads: [
            { ...row, tag: 'email', state: 'masked', reads: 2 },
            { ...row, tag: 'ssn', state: 'unmasked', reads: 5 },
            { ...row, subject: 'bob', tag: 'email', state: 'masked', reads: 4 }
          ]
        })
      )
    );
    const items = [...byTestId(root, 'report-tags')!.querySelectorAll('li')];
    expect(items.map(li => li.textContent)).toEqual([
      'email (masked): 6 statement(s)',
      'ssn (unmasked): 5 statement(s)'
    ]);
  });

  it('says so when nothing classified was read and nothing denied', () => {
    const root = drawn(ReportPanel.render(report()));
    expect(byTestId(root, 'report-tags')).toBeNull();
    expect(byTestId(root, 'report-denials')).toBeNull();
    expect(root.textContent).toContain('None in this window.');
  });
});

describe('PolicyPanel.render', () => {
  it('explains how to configure a policy when the server has none', () => {
    const root = drawn(PolicyPanel.render({}));
    expect(byTestId(root, 'policy-coming')!.textContent).toContain(
      'No policy configured for this server'
    );
  });

  it("shows the server's reason when the policy cannot be loaded", () => {
    const root = drawn(
      PolicyPanel.render({ error: 'The policy file is invalid.' })
    );
    expect(root.textContent).toBe('The policy file is invalid.');
  });

  it('puts what applies to the current user first', () => {
    const summary: IPolicySummary = {
      name: 'demo',
      version: 3,
      hash: 'abcdef0123456789',
      you: {
        display_name: 'Bob',
        verified: true,
        roles: ['analyst'],
        masks: { email: 'email' },
        need_approval: ['unmask']
      },
      roles: ['analyst', 'admin']
    };
    const root = drawn(PolicyPanel.render(summary));
    expect(root.textContent).toContain('version 3 · abcdef012345');
    const you = byTestId(root, 'policy-you')!;
    expect(you.textContent).toContain('Bob (verified) · roles: analyst');
    expect(you.textContent).toContain('email → email');
    expect(you.textContent).toContain('Needs approval: unmask');
    expect(root.querySelector('h4')!.textContent).toBe('You');
  });

  it('lists the columns PII detection found, proposed or masked', () => {
    const root = drawn(
      PolicyPanel.render({
        name: 'demo',
        pii_findings: [
          {
            table: 'people',
            column: 'notes',
            tag: 'email',
            confidence: 0.9,
            sample_size: 200
          },
          {
            table: 'people',
            column: 'tel',
            tag: 'phone',
            proposed: true,
            connection: 'pg'
          }
        ]
      })
    );
    const items = [...byTestId(root, 'policy-pii')!.querySelectorAll('li')];
    expect(items.map(li => li.firstChild!.textContent)).toEqual([
      'people.notes',
      'people.tel'
    ]);
    expect(items[0].textContent).toContain('looks like email: masked');
    expect(items[0].textContent).toContain('confidence 0.90 · 200 sampled');
    expect(items[1].textContent).toContain('looks like phone (proposed)');
    expect(items[1].textContent).toContain('· pg');
  });
});

/** A tab whose answer is whatever `next` says: a value, or a failure. */
class Answering extends LoadedPanel<string[]> {
  constructor(public next: () => Promise<string[]>) {
    super('jp-gov-test');
    this.node.append(this.body);
  }
  calls = 0;
  protected fetch(): Promise<string[]> {
    this.calls += 1;
    return this.next();
  }
  protected render(items: string[]): Node[] {
    return items.map(item => h('p', {}, item));
  }
}

describe('LoadedPanel', () => {
  it('renders the answer into its body', async () => {
    const panel = new Answering(async () => ['one', 'two']);
    await panel.load();
    expect(panel.node.querySelector('.jp-gov-test-body')!.textContent).toBe(
      'onetwo'
    );
    expect(panel.loaded).toBe(true);
  });

  it('shows a failure as one sentence and loads again when next shown', async () => {
    const panel = new Answering(async () => {
      throw new ApiError(404, 'Not Found');
    });
    await panel.load();
    const message = panel.node.querySelector('[role="status"]')!;
    expect(message.textContent).toMatch(/server extension is not enabled/);
    expect(panel.loaded).toBe(false);
    panel.next = async () => ['back'];
    await panel.load();
    expect(panel.node.querySelector('[role="status"]')).toBeNull();
    expect(panel.node.textContent).toBe('back');
  });

  it('replaces what it showed instead of adding to it', async () => {
    const panel = new Answering(async () => ['a']);
    await panel.load();
    await panel.load();
    expect(panel.node.querySelectorAll('p')).toHaveLength(1);
    expect(panel.calls).toBe(2);
  });
});

describe('pollFrequency', () => {
  it('polls only on demand for 0 seconds', () => {
    expect(pollFrequency(0)).toEqual({
      interval: Infinity,
      max: Infinity,
      backoff: false
    });
  });

  it('backs off to at least a minute, or six intervals', () => {
    expect(pollFrequency(5)).toEqual({
      interval: 5000,
      max: 60_000,
      backoff: true
    });
    expect(pollFrequency(20)).toEqual({
      interval: 20_000,
      max: 120_000,
      backoff: true
    });
  });
});

describe('dom helpers', () => {
  it('draws bidi overrides and zero-width characters visibly', () => {
    expect(reveal('ab\u202Ecd\u200B')).toBe('ab⟨U+202E⟩cd⟨U+200B⟩');
    expect(reveal('line\n\tnext')).toBe('line\n\tnext');
  });

  it('makes a string from the server a text node, never markup', () => {
    const node = h('div', { title: 'x\u202E' }, '<img src=x onerror=alert(1)>');
    expect(node.children).toHaveLength(0);
    expect(node.textContent).toBe('<img src=x onerror=alert(1)>');
    expect(node.getAttribute('title')).toBe('x⟨U+202E⟩');
  });
});
