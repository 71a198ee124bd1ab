/**
 * The Report tab: the compliance report of the audit (`GET report`), summarised in the
 * sidebar, with a Report button that opens the full self-contained HTML page in a browser
 * tab and links to the CSV (for spreadsheets) and Markdown versions.
 *
 * The summary is built from `format=json` with DOM nodes only (no innerHTML); the HTML page
 * is the server's, served with a CSP that forbids scripts and remote loads.
 */
import { apiURL, type IReport, requestAPI } from './api';
import { h } from './dom';
import { LoadedPanel } from './panel';

const WINDOWS: [string, string][] = [
  ['7d', 'last 7 days'],
  ['30d', 'last 30 days'],
  ['90d', 'last 90 days']
];

/** The URL of the report in one format, for links (the browser sends the session cookie). */
export function reportURL(since: string, format: string): string {
  return apiURL('report', { since, format });
}

export class ReportPanel extends LoadedPanel<IReport> {
  constructor() {
    super('jp-gov-report');
    this.body.setAttribute('data-testid', 'report-summary');
    this._window = h(
      'select',
      {
        class: 'jp-gov-select',
        'aria-label': 'Report window',
        'data-testid': 'report-window'
      },
      ...WINDOWS.map(([value, label]) =>
        h('option', { value, selected: value === '30d' }, label)
      )
    );
    this._window.addEventListener('change', () => void this.load());
    this._open = h(
      'button',
      {
        class: 'jp-gov-button jp-mod-accept',
        type: 'button',
        'data-testid': 'report-open',
        title: 'Open the full report (HTML, with charts) in a new browser tab'
      },
      'Report'
    );
    this._open.addEventListener('click', () => {
      window.open(reportURL(this.since, 'html'), '_blank', 'noopener');
    });
    this._csv = h(
      'a',
      { class: 'jp-gov-link', 'data-testid': 'report-csv', download: '' },
      'CSV'
    );
    this._md = h(
      'a',
      { class: 'jp-gov-link', 'data-testid': 'report-md', download: '' },
      'Markdown'
    );
    this.node.append(
      h(
        'div',
        { class: 'jp-gov-report-header' },
        this._window,
        this._open,
        this._csv,
        this._md
      ),
      this.body
    );
    this._links();
  }

  get since(): string {
    return this._window.value || '30d';
  }

  /** Fetch the report's figures for the chosen window and show them. */
  async load(): Promise<void> {
    this._links();
    await super.load();
  }

  protected fetch(): Promise<IReport> {
    return requestAPI<IReport>('report', { since: this.since, format: 'json' });
  }

  protected render(report: IReport): Node[] {
    return ReportPanel.render(report);
  }

  private _links(): void {
    this._csv.setAttribute('href', reportURL(this.since, 'csv'));
    this._md.setAttribute('href', reportURL(this.since, 'md'));
  }

  static render(report: IReport): Node[] {
    const chain = report.chain;
    const totals = report.totals ?? {};
    const figures: [string, number][] = [
      ['statements', totals.statements ?? 0],
      ['denied', totals.denied ?? 0],
      ['unmasking approvals', report.unmask_approvals.length],
      ['write approvals', report.write_approvals.length],
      ['break-glass', report.break_glass.length]
    ];
    const tags = new Map<string, number>();
    for (const row of report.pii_reads) {
      const key = `${row.tag} (${row.state})`;
      tags.set(key, (tags.get(key) ?? 0) + row.reads);
    }
    const nodes: Node[] = [
      h(
        'p',
        {
          class: `jp-gov-report-chain ${chain.ok ? 'jp-gov-ok' : 'jp-gov-bad'}`,
          'data-testid': 'report-chain'
        },
        chain.ok
          ? `Chain intact: ${chain.rows} events verified.`
          : `Chain BROKEN at event ${chain.broken_at}: ${chain.reason}`
      ),
      h(
        'dl',
        { class: 'jp-gov-report-figures' },
        ...figures.flatMap(([label, value]) => [
          h('dt', {}, label),
          h('dd', { 'data-figure': label }, String(value))
        ])
      )
    ];
    nodes.push(h('h3', {}, 'Classified data read'));
    if (tags.size === 0) {
      nodes.push(h('p', { class: 'jp-gov-muted' }, 'None in this window.'));
    } else {
      nodes.push(
        h(
          'ul',
          { class: 'jp-gov-report-list', 'data-testid': 'report-tags' },
          ...[...tags.entries()]
            .sort((a, b) => b[1] - a[1])
            .map(([tag, n]) => h('li', {}, `${tag}: ${n} statement(s)`))
        )
      );
    }
    nodes.push(h('h3', {}, 'Denied attempts by rule'));
    if (report.denials.length === 0) {
      nodes.push(h('p', { class: 'jp-gov-muted' }, 'None in this window.'));
    } else {
      nodes.push(
        h(
          'ul',
          { class: 'jp-gov-report-list', 'data-testid': 'report-denials' },
          ...report.denials.map(d =>
            h('li', {}, `${d.rule} on ${d.connection}: ${d.attempts}`)
          )
        )
      );
    }
    return nodes;
  }

  private _window: HTMLSelectElement;
  private _open: HTMLButtonElement;
  private _csv: HTMLAnchorElement;
  private _md: HTMLAnchorElement;
}
