/**
 * The Audit tab: recent events polled from the server, filters, decision badges, event
 * details, the hash chain's integrity and a chart of decisions over time.
 */
import { Debouncer, Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import {
  explainError,
  type IAuditEvent,
  type IAuditPage,
  type IStats,
  type IVerifyReport,
  requestAPI
} from './api';
import { breakGlassFlag } from './approvals';
import { CATEGORY_LABELS, DecisionChart } from './chart';
import {
  formatClock,
  formatFullTime,
  formatTime,
  h,
  replaceChildren,
  setAttr,
  setText
} from './dom';
import { pollFrequency } from './panel';

export interface IAuditOptions {
  /** Seconds between polls; 0 polls only on demand. */
  refreshInterval: number;
  /** How many of the newest matching events the table shows. */
  pageSize: number;
  /** Width of one chart bar in seconds. */
  statsBucket: number;
}

export const DEFAULT_AUDIT_OPTIONS: IAuditOptions = {
  refreshInterval: 5,
  pageSize: 100,
  statsBucket: 3600
};

/** Verify the whole chain at most this often on its own (a click verifies at once). */
const VERIFY_EVERY_MS = 60_000;

const DECISIONS: [string, string][] = [
  ['', 'Any decision'],
  ['allow', 'Allowed'],
  ['deny', 'Denied'],
  ['approval_required', 'Needs approval'],
  ['error', 'Error']
];

const KINDS: [string, string][] = [
  ['decision', 'Decisions'],
  ['', 'All events']
];

/** A short label for events that carry no decision (attempts, sign-ins, approvals...). */
function kindLabel(kind: string): string {
  return kind.replace(/_/g, ' ');
}

export function badge(
  event: Pick<IAuditEvent, 'category' | 'kind'>
): HTMLElement {
  const category = event.category;
  const label = category ? CATEGORY_LABELS[category] : kindLabel(event.kind);
  return h(
    'span',
    {
      class: `jp-gov-badge jp-gov-badge-${category ?? 'none'}`,
      'data-category': category ?? 'none'
    },
    label
  );
}

export class AuditPanel extends Widget {
  constructor(options: Partial<IAuditOptions> = {}) {
    super();
    this.addClass('jp-gov-audit');
    this._options = { ...DEFAULT_AUDIT_OPTIONS, ...options };

    // Header: chain integrity, refresh, status.
    this._integrity = h(
      'button',
      {
        class: 'jp-gov-integrity',
        type: 'button',
        'data-state': 'checking',
        title: 'Verify the audit hash chain now'
      },
      h('span', { class: 'jp-gov-integrity-dot' }),
      h('span', { class: 'jp-gov-integrity-text' }, 'Checking the chain…')
    );
    this._integrity.addEventListener('click', () => {
      void this._verify();
    });
    const refresh = h(
      'button',
      {
        class: 'jp-gov-button jp-gov-refresh',
        type: 'button',
        title: 'Refresh now'
      },
      '↻'
    );
    refresh.addEventListener('click', () => {
      this._lastVerify = 0;
      void this._poll.refresh();
    });
    const header = h(
      'div',
      { class: 'jp-gov-audit-header' },
      this._integrity,
      refresh
    );

    this._chart = new DecisionChart();

    // Filters.
    this._user = h('input', {
      class: 'jp-gov-input',
      type: 'search',
      placeholder: 'User',
      'aria-label': 'Filter by user',
      name: 'user'
    });
    this._decision = h('select', {
      class: 'jp-gov-select',
      'aria-label': 'Filter by decision',
      name: 'decision'
    });
    for (const [value, label] of DECISIONS) {
      this._decision.append(h('option', { value }, label));
    }
    this._kind = h('select', {
      class: 'jp-gov-select',
      'aria-label': 'Which events',
      name: 'kind'
    });
    for (const [value, label] of KINDS) {
      this._kind.append(h('option', { value }, label));
    }
    this._text = h('input', {
      class: 'jp-gov-input',
      type: 'search',
      placeholder: 'Search statements and reasons',
      'aria-label': 'Search statements and reasons',
      name: 'text'
    });
    const filters = h(
      'div',
      { class: 'jp-gov-filters', role: 'search' },
      this._text,
      this._user,
      this._decision,
      this._kind
    );
    this._debouncer = new Debouncer(() => this._filtersChanged(), 300);
    for (const input of [this._user, this._text]) {
      input.addEventListener('input', () => {
        void this._debouncer.invoke();
      });
    }
    for (const select of [this._decision, this._kind]) {
      select.addEventListener('change', () => {
        void this._filtersChanged();
      });
    }

    // The table; rows are keyed by chain position and reused across polls.
    this._tbody = h('tbody');
    this._table = h(
      'table',
      { class: 'jp-gov-table', 'aria-label': 'Audit events' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col', class: 'jp-gov-col-time' }, 'Time'),
          h('th', { scope: 'col', class: 'jp-gov-col-user' }, 'User'),
          h('th', { scope: 'col', class: 'jp-gov-col-decision' }, 'Decision'),
          h('th', { scope: 'col', class: 'jp-gov-col-statement' }, 'Statement')
        )
      ),
      this._tbody
    );
    this._tbody.addEventListener('click', event => {
      const row = (event.target as HTMLElement).closest('tr');
      if (row?.dataset.eventId) {
        this._select(Number(row.dataset.eventId));
      }
    });
    this._tbody.addEventListener('keydown', event => this._onKey(event));
    this._empty = h('div', { class: 'jp-gov-empty', hidden: true });
    this._message = h('div', {
      class: 'jp-gov-message',
      role: 'status',
      hidden: true
    });
    this._status = h('div', { class: 'jp-gov-status', 'aria-live': 'polite' });
    const tableBox = h(
      'div',
      { class: 'jp-gov-table-box' },
      this._table,
      this._empty
    );

    this._details = h('section', {
      class: 'jp-gov-details',
      hidden: true,
      'aria-label': 'Event details'
    });

    this.node.append(
      header,
      this._chart.node,
      filters,
      this._message,
      tableBox,
      this._details,
      this._status
    );

    this._poll = new Poll({
      auto: false,
      factory: () => this._refresh(),
      frequency: pollFrequency(this._options.refreshInterval),
      name: 'jupyter-gov:audit',
      standby: () => !this.isVisible || 'when-hidden'
    });
  }

  get options(): IAuditOptions {
    return { ...this._options };
  }

  set options(options: Partial<IAuditOptions>) {
    const before = this._options;
    this._options = { ...before, ...options };
    if (before.refreshInterval !== this._options.refreshInterval) {
      this._poll.frequency = pollFrequency(this._options.refreshInterval);
    }
    if (
      before.pageSize !== this._options.pageSize ||
      before.statsBucket !== this._options.statsBucket
    ) {
      void this._poll.refresh();
    }
  }

  /** Fetch now (also what the poll calls). */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    this._debouncer.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    if (this._poll.state.phase === 'constructed') {
      void this._poll.start();
    }
    void this._poll.refresh();
  }

  protected onAfterAttach(): void {
    if (this.isVisible && this._poll.state.phase === 'constructed') {
      void this._poll.start();
    }
  }

  // -- data ---------------------------------------------------------------------------

  private _filters(): Record<string, string> {
    return {
      user: this._user.value.trim(),
      decision: this._decision.value,
      kind: this._kind.value,
      text: this._text.value.trim()
    };
  }

  private async _filtersChanged(): Promise<void> {
    const key = JSON.stringify(this._filters());
    if (key === this._filterKey) {
      return;
    }
    this._filterKey = key;
    this._generation += 1;
    await this._poll.refresh();
  }

  private async _refresh(): Promise<void> {
    const request = ++this._requests;
    const generation = this._generation;
    const filters = this._filters();
    const verifyDue = Date.now() - this._lastVerify >= VERIFY_EVERY_MS;
    try {
      const [page, stats] = await Promise.all([
        requestAPI<IAuditPage>('audit', {
          ...filters,
          limit: this._options.pageSize
        }),
        requestAPI<IStats>('audit/stats', {
          bucket: this._options.statsBucket,
          user: filters.user,
          text: filters.text
        })
      ]);
      if (request !== this._requests) {
        return; // a newer request went out meanwhile; its answer wins
      }
      this._showMessage(null);
      this._renderRows(page, generation);
      this._chart.update(stats);
      setText(
        this._status,
        `${page.events.length < page.total ? `Newest ${page.events.length} of ` : ''}` +
          `${page.total} event${page.total === 1 ? '' : 's'} · updated ${formatClock(Date.now() / 1000)}`
      );
    } catch (error) {
      if (request === this._requests) {
        this._showMessage(explainError(error));
        setText(this._status, 'Not updated: see the message above.');
      }
      throw error; // lets the poll back off
    }
    if (verifyDue) {
      void this._verify();
    }
  }

  private async _verify(): Promise<void> {
    this._lastVerify = Date.now();
    if (
      this._integrity.dataset.state !== 'ok' &&
      this._integrity.dataset.state !== 'broken'
    ) {
      this._setIntegrity('checking', 'Checking the chain…', '');
    }
    try {
      const report = await requestAPI<IVerifyReport>('audit/verify');
      if (report.ok) {
        this._setIntegrity(
          'ok',
          `Chain intact · ${report.rows} event${report.rows === 1 ? '' : 's'}`,
          `Every event links to the one before it. Head ${report.head.slice(0, 16)}…`
        );
      } else {
        const where =
          report.broken_at !== null ? ` at event #${report.broken_at}` : '';
        this._setIntegrity(
          'broken',
          `Chain broken${where}`,
          `The audit log was altered${where}: ${report.reason}.`
        );
      }
    } catch (error) {
      this._setIntegrity('unknown', 'Chain not checked', explainError(error));
    }
  }

  private _setIntegrity(state: string, text: string, detail: string): void {
    setAttr(this._integrity, 'data-state', state);
    setText(this._integrity.querySelector('.jp-gov-integrity-text')!, text);
    setAttr(
      this._integrity,
      'title',
      `${detail ? `${detail} ` : ''}Click to verify again.`
    );
  }

  private _showMessage(text: string | null): void {
    if (text === null) {
      this._message.hidden = true;
      setText(this._message, '');
    } else {
      setText(this._message, text);
      this._message.hidden = false;
    }
  }

  // -- rows -----------------------------------------------------------------------------

  private _renderRows(page: IAuditPage, generation: number): void {
    const highlight = this._rendered && generation === this._renderedGeneration;
    this._rendered = true;
    this._renderedGeneration = generation;
    const wanted = new Set(page.events.map(e => e.id));
    for (const [id, row] of this._rows) {
      if (!wanted.has(id)) {
        row.remove();
        this._rows.delete(id);
        this._events.delete(id);
      }
    }
    // Walk the new order and move or insert only what is out of place.
    let cursor = this._tbody.firstElementChild;
    for (const event of page.events) {
      let row = this._rows.get(event.id);
      if (!row) {
        row = this._makeRow(event);
        if (highlight) {
          row.classList.add('jp-gov-new');
        }
        this._rows.set(event.id, row);
      }
      this._events.set(event.id, event);
      if (row === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this._tbody.insertBefore(row, cursor);
      }
    }
    const empty = page.events.length === 0;
    this._empty.hidden = !empty;
    this._table.classList.toggle('jp-mod-empty', empty);
    if (empty) {
      const filtered = Object.values(this._filters()).some(
        v => v && v !== 'decision'
      );
      setText(
        this._empty,
        filtered
          ? 'No events match these filters.'
          : 'No audit events yet. Governed queries (%%gsql) appear here as they run.'
      );
    }
    if (this._selected !== null && !this._rows.has(this._selected)) {
      this._select(null);
    }
  }

  private _makeRow(event: IAuditEvent): HTMLTableRowElement {
    const who = event.display_name || event.subject || '—';
    const statement = event.statement || event.error || kindLabel(event.kind);
    const row = h(
      'tr',
      {
        class: 'jp-gov-row',
        tabindex: 0,
        'data-event-id': event.id,
        'data-kind': event.kind,
        'aria-selected': 'false'
      },
      h(
        'td',
        { class: 'jp-gov-col-time', title: formatFullTime(event.ts) },
        formatTime(event.ts)
      ),
      h(
        'td',
        { class: 'jp-gov-col-user', title: event.subject ?? '' },
        who,
        event.verified
          ? h(
              'span',
              { class: 'jp-gov-verified', title: 'Verified identity' },
              '✓'
            )
          : null
      ),
      h(
        'td',
        { class: 'jp-gov-col-decision' },
        badge(event),
        event.break_glass ? breakGlassFlag() : null
      ),
      h('td', { class: 'jp-gov-col-statement', title: statement }, statement)
    );
    return row;
  }

  private _onKey(event: KeyboardEvent): void {
    const row = (event.target as HTMLElement).closest('tr');
    if (!row) {
      return;
    }
    let target: Element | null = null;
    if (event.key === 'Enter' || event.key === ' ') {
      this._select(Number(row.dataset.eventId));
    } else if (event.key === 'ArrowDown') {
      target = row.nextElementSibling;
    } else if (event.key === 'ArrowUp') {
      target = row.previousElementSibling;
    } else if (event.key === 'Escape') {
      this._select(null);
    } else {
      return;
    }
    event.preventDefault();
    if (target instanceof HTMLElement) {
      target.focus();
      this._select(Number(target.dataset.eventId));
    }
  }

  // -- details --------------------------------------------------------------------------

  private _select(id: number | null): void {
    if (id === this._selected) {
      if (id !== null) {
        id = null; // a second click on the selected row closes its details
      } else {
        return;
      }
    }
    if (this._selected !== null) {
      const before = this._rows.get(this._selected);
      before?.classList.remove('jp-mod-selected');
      before?.setAttribute('aria-selected', 'false');
    }
    this._selected = id;
    const event = id === null ? undefined : this._events.get(id);
    if (!event) {
      this._selected = null;
      this._details.hidden = true;
      replaceChildren(this._details);
      return;
    }
    const row = this._rows.get(event.id)!;
    row.classList.add('jp-mod-selected');
    row.setAttribute('aria-selected', 'true');
    this._renderDetails(event);
    this._details.hidden = false;
  }

  private _renderDetails(event: IAuditEvent): void {
    const close = h(
      'button',
      {
        class: 'jp-gov-button jp-gov-close',
        type: 'button',
        title: 'Close details'
      },
      '×'
    );
    close.addEventListener('click', () => this._select(null));
    const section = (title: string, ...body: (Node | null)[]) =>
      h('div', { class: 'jp-gov-detail-section' }, h('h4', {}, title), ...body);

    const rules = event.rules?.length
      ? h(
          'div',
          { class: 'jp-gov-chips jp-gov-detail-rules' },
          ...event.rules.map(rule => h('code', { class: 'jp-gov-chip' }, rule))
        )
      : null;
    const reasons = event.reasons?.length
      ? h(
          'ul',
          { class: 'jp-gov-detail-reasons' },
          ...event.reasons.map(reason => h('li', {}, reason))
        )
      : null;
    const masked = event.masked_columns
      ? Object.entries(event.masked_columns)
      : [];
    const maskedTable = masked.length
      ? h(
          'table',
          { class: 'jp-gov-detail-masked' },
          h(
            'thead',
            {},
            h('tr', {}, h('th', {}, 'Column'), h('th', {}, 'Mask'))
          ),
          h(
            'tbody',
            {},
            ...masked.map(([column, mask]) =>
              h(
                'tr',
                {},
                h('td', {}, h('code', {}, column)),
                h('td', {}, String(mask))
              )
            )
          )
        )
      : null;

    const meta: [string, string | null | undefined][] = [
      ['Event', `#${event.id} · ${kindLabel(event.kind)}`],
      ['Time', formatFullTime(event.ts)],
      [
        'User',
        event.display_name && event.display_name !== event.subject
          ? `${event.display_name} (${event.subject})`
          : event.subject
      ],
      [
        'Sign-in',
        event.auth_method
          ? `${event.auth_method}${event.verified ? ', verified' : event.verified === false ? ', not verified' : ''}`
          : null
      ],
      ['Connection', event.connection],
      ['Purpose', event.purpose],
      [
        'Rows',
        event.rows !== null && event.rows !== undefined
          ? String(event.rows)
          : null
      ],
      [
        'Duration',
        event.duration_ms !== null && event.duration_ms !== undefined
          ? `${event.duration_ms} ms`
          : null
      ],
      ['Error', event.error],
      ['Query id', event.query_id],
      ['Fingerprint', event.fingerprint],
      [
        'Policy',
        event.policy_hash
          ? `${event.policy_name ?? ''} ${event.policy_hash.slice(0, 12)}`.trim()
          : event.policy_name
      ]
    ];
    const dl = h('dl', { class: 'jp-gov-detail-meta' });
    for (const [term, value] of meta) {
      if (value) {
        dl.append(h('dt', {}, term), h('dd', {}, value));
      }
    }
    replaceChildren(
      this._details,
      h(
        'header',
        { class: 'jp-gov-detail-header' },
        badge(event),
        event.break_glass ? breakGlassFlag() : null,
        h('span', {}, `Event #${event.id}`),
        close
      ),
      event.statement
        ? section(
            'Statement',
            h('pre', { class: 'jp-gov-detail-statement' }, event.statement)
          )
        : null,
      rules ? section('Rules', rules) : null,
      reasons ? section('Reasons', reasons) : null,
      maskedTable ? section('Masked columns', maskedTable) : null,
      section('Details', dl)
    );
  }

  private _options: IAuditOptions;
  private _poll: Poll;
  private _debouncer: Debouncer;
  private _integrity: HTMLButtonElement;
  private _chart: DecisionChart;
  private _user: HTMLInputElement;
  private _decision: HTMLSelectElement;
  private _kind: HTMLSelectElement;
  private _text: HTMLInputElement;
  private _table: HTMLTableElement;
  private _tbody: HTMLTableSectionElement;
  private _empty: HTMLElement;
  private _message: HTMLElement;
  private _status: HTMLElement;
  private _details: HTMLElement;
  private _rows = new Map<number, HTMLTableRowElement>();
  private _events = new Map<number, IAuditEvent>();
  private _selected: number | null = null;
  private _requests = 0;
  private _generation = 0;
  private _renderedGeneration = -1;
  private _rendered = false;
  private _filterKey = JSON.stringify({
    user: '',
    decision: '',
    kind: 'decision',
    text: ''
  });
  private _lastVerify = 0;
}
