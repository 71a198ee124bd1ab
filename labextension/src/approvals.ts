/**
 * The Approvals tab: requests with everything a decision needs (who, why, the exact
 * statement with its values for those who may decide, the rows a dry run says it touches,
 * the row limit), Approve / Deny with a comment, break-glass runs flagged, and paging with
 * the count of every match, so no request falls off the list unseen.
 *
 * It talks to `GET approvals?state=&limit=&offset=` and
 * `POST approvals/{id}/approve|deny` (`{"comment": ...}`). A server without approvals
 * answers 404, and the tab says approvals are coming.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import {
  ApiError,
  type IApproval,
  type IApprovalsPage,
  requestAPI
} from './api';
import { formatFullTime, formatTime, h, setText } from './dom';
import { pollFrequency } from './panel';

/** Requests per page. */
export const APPROVALS_PAGE = 50;

const STATES: [string, string][] = [
  ['pending', 'Pending'],
  ['all', 'All requests']
];

/** A number for the facts list, or what its absence means. */
function count(value: unknown, none: string): string {
  return typeof value === 'number' && Number.isFinite(value)
    ? value.toLocaleString()
    : none;
}

/** Parameters as one line of JSON; whatever they are, they end up as text. */
function showParams(params: unknown): string {
  try {
    return JSON.stringify(params) ?? String(params);
  } catch {
    return String(params);
  }
}

/** What changes how an item looks: when it changes, the item is drawn again. */
function itemKey(a: IApproval): string {
  return JSON.stringify([
    a.id,
    a.state,
    a.can_decide,
    a.decided_by_name,
    a.comment,
    Boolean(a.statement_text)
  ]);
}

export class ApprovalsPanel extends Widget {
  constructor(refreshInterval = 5) {
    super();
    this.addClass('jp-gov-approvals');
    this._intro = h(
      'p',
      { class: 'jp-gov-intro' },
      'Statements that need a second pair of eyes wait here for an approver.'
    );
    this._coming = h(
      'div',
      {
        class: 'jp-gov-coming',
        hidden: true,
        'data-testid': 'approvals-coming'
      },
      h('h3', {}, 'Approvals are coming'),
      h(
        'p',
        {},
        'This Jupyter server does not serve approvals yet. When it does, this tab lists ' +
          'each pending request with:'
      ),
      h(
        'ul',
        {},
        h('li', {}, 'who asked, when, and on which connection;'),
        h('li', {}, 'the statement, the rules that require approval and why;'),
        h(
          'li',
          {},
          'Approve and Deny buttons with a comment for the audit log.'
        )
      )
    );
    this._state = h('select', {
      class: 'jp-gov-select',
      'aria-label': 'Which requests',
      name: 'approval-state'
    });
    for (const [value, label] of STATES) {
      this._state.append(h('option', { value }, label));
    }
    this._state.addEventListener('change', () => {
      this._offset = 0;
      void this._poll.refresh();
    });
    this._list = h('ul', {
      class: 'jp-gov-approval-list',
      'aria-label': 'Approval requests'
    });
    this._empty = h('p', { class: 'jp-gov-empty', hidden: true });
    this._previous = h(
      'button',
      { class: 'jp-gov-button', type: 'button', title: 'Newer requests' },
      '‹ Newer'
    );
    this._next = h(
      'button',
      { class: 'jp-gov-button', type: 'button', title: 'Older requests' },
      'Older ›'
    );
    this._previous.addEventListener('click', () => this._page(-1));
    this._next.addEventListener('click', () => this._page(1));
    this._range = h('span', {
      class: 'jp-gov-pager-range',
      'data-testid': 'approvals-range'
    });
    this._pager = h(
      'div',
      { class: 'jp-gov-pager', hidden: true },
      this._previous,
      this._range,
      this._next
    );
    this._message = h('div', {
      class: 'jp-gov-message',
      role: 'status',
      hidden: true
    });
    this._controls = h(
      'div',
      { class: 'jp-gov-approvals-controls' },
      this._state
    );
    this.node.append(
      this._intro,
      this._coming,
      this._controls,
      this._message,
      this._pager,
      this._list,
      this._empty
    );
    this._poll = new Poll({
      auto: false,
      factory: () => this._refresh(),
      frequency: pollFrequency(refreshInterval),
      name: 'jupyter-gov:approvals',
      standby: () => !this.isVisible || 'when-hidden'
    });
  }

  /**
   * Told how many requests this user may decide after every refresh, so the sidebar's
   * badge reuses this panel's request instead of polling the same endpoint as well.
   */
  onActionable: ((count: number) => void) | null = null;

  set refreshInterval(seconds: number) {
    this._poll.frequency = pollFrequency(seconds);
  }

  dispose(): void {
    if (!this.isDisposed) {
      this._poll.dispose();
      super.dispose();
    }
  }

  protected onAfterShow(): void {
    if (this._poll.state.phase === 'constructed') {
      void this._poll.start();
    }
    void this._poll.refresh();
  }

  private _page(step: number): void {
    this._offset = Math.max(0, this._offset + step * APPROVALS_PAGE);
    void this._poll.refresh();
  }

  private async _refresh(): Promise<void> {
    let page: IApprovalsPage;
    try {
      page = await requestAPI<IApprovalsPage>('approvals', {
        state: this._state.value,
        limit: APPROVALS_PAGE,
        offset: this._offset
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this._coming.hidden = false;
        this._intro.hidden = true;
        this._controls.hidden = true;
        this._list.hidden = true;
        this._empty.hidden = true;
        this._pager.hidden = true;
        this._message.hidden = true;
        // Nothing to poll for until the server is upgraded: stop.
        void this._poll.stop();
        return;
      }
      setText(
        this._message,
        error instanceof Error ? error.message : String(error)
      );
      this._message.hidden = false;
      throw error;
    }
    const approvals = page.approvals ?? [];
    const total = page.total ?? approvals.length;
    this.onActionable?.(actionableCount(page));
    if (this._offset > 0 && this._offset >= total) {
      // The page emptied (requests were decided): show the last one that has any.
      this._offset = Math.max(
        0,
        Math.floor((total - 1) / APPROVALS_PAGE) * APPROVALS_PAGE
      );
      return this._refresh();
    }
    this._coming.hidden = true;
    this._intro.hidden = false;
    this._controls.hidden = false;
    this._list.hidden = false;
    this._message.hidden = true;
    this._render(approvals, total);
  }

  private _render(approvals: IApproval[], total: number): void {
    const wanted = new Set(approvals.map(itemKey));
    for (const [key, item] of this._items) {
      if (!wanted.has(key)) {
        item.remove();
        this._items.delete(key);
      }
    }
    let cursor = this._list.firstElementChild;
    for (const approval of approvals) {
      const key = itemKey(approval);
      let item = this._items.get(key);
      if (!item) {
        item = this._makeItem(approval);
        this._items.set(key, item);
      }
      if (item === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this._list.insertBefore(item, cursor);
      }
    }
    const pending = this._state.value === 'pending';
    this._empty.hidden = approvals.length > 0;
    setText(
      this._empty,
      pending ? 'No approvals are pending.' : 'No approval requests yet.'
    );
    // Never cut the list off silently: say how many there are and page through them.
    const first = approvals.length ? this._offset + 1 : 0;
    const last = this._offset + approvals.length;
    this._pager.hidden = total <= approvals.length && this._offset === 0;
    setText(
      this._range,
      `${first}–${last} of ${total} ${pending ? 'pending ' : ''}request${total === 1 ? '' : 's'}`
    );
    this._previous.disabled = this._offset === 0;
    this._next.disabled = last >= total;
  }

  private _makeItem(approval: IApproval): HTMLLIElement {
    const who =
      approval.display_name ||
      approval.requester_name ||
      approval.requester ||
      approval.subject ||
      'someone';
    const state = approval.state ?? 'pending';
    const when = approval.requested_at
      ? h(
          'span',
          {
            class: 'jp-gov-muted',
            title: formatFullTime(approval.requested_at)
          },
          formatTime(approval.requested_at)
        )
      : null;
    const facts: [string, string | null][] = [
      [
        'Dry run',
        typeof approval.dry_run_rows === 'number'
          ? `touches ${count(approval.dry_run_rows, '')} row${approval.dry_run_rows === 1 ? '' : 's'}`
          : 'not counted'
      ],
      ['Row limit', count(approval.row_limit, 'none')],
      [
        'Unmask',
        approval.unmask?.length ? approval.unmask.map(String).join(', ') : null
      ],
      [
        'Expires',
        approval.expires_at && state === 'pending'
          ? formatFullTime(approval.expires_at)
          : null
      ],
      [
        state === 'denied' ? 'Denied by' : 'Decided by',
        approval.decided_by_name
          ? `${approval.decided_by_name}${approval.comment ? `: “${approval.comment}”` : ''}`
          : null
      ]
    ];
    const dl = h('dl', { class: 'jp-gov-detail-meta jp-gov-approval-facts' });
    for (const [term, value] of facts) {
      if (value) {
        dl.append(h('dt', {}, term), h('dd', {}, value));
      }
    }
    // Erased ("") once a request is final; absent for those who may not decide.
    const exact =
      typeof approval.statement_text === 'string' &&
      approval.statement_text !== '';
    const statement = exact
      ? h(
          'div',
          { class: 'jp-gov-approval-exact' },
          h('h4', {}, 'Runs exactly'),
          h(
            'pre',
            { class: 'jp-gov-detail-statement jp-gov-approval-sql' },
            String(approval.statement_text ?? approval.statement ?? '')
          ),
          approval.params !== undefined && approval.params !== null
            ? h(
                'pre',
                { class: 'jp-gov-approval-params', title: 'Parameter values' },
                showParams(approval.params)
              )
            : null
        )
      : approval.statement
        ? h(
            'pre',
            { class: 'jp-gov-detail-statement jp-gov-approval-sql' },
            String(approval.statement)
          )
        : null;
    return h(
      'li',
      {
        class: 'jp-gov-approval',
        'data-approval-id': String(approval.id),
        'data-state': state,
        'data-break-glass': approval.break_glass ? 'true' : undefined
      },
      h(
        'div',
        { class: 'jp-gov-approval-head' },
        h('strong', { class: 'jp-gov-approval-who' }, String(who)),
        approval.connection
          ? h('span', { class: 'jp-gov-muted' }, `on ${approval.connection}`)
          : null,
        when,
        state !== 'pending'
          ? h(
              'span',
              { class: `jp-gov-badge jp-gov-approval-state` },
              String(state)
            )
          : null,
        approval.break_glass ? breakGlassFlag() : null
      ),
      approval.justification
        ? h(
            'p',
            { class: 'jp-gov-approval-justification' },
            h('span', { class: 'jp-gov-muted' }, 'Why: '),
            `“${approval.justification}”`
          )
        : null,
      statement,
      approval.reasons?.length
        ? h(
            'ul',
            { class: 'jp-gov-detail-reasons' },
            ...approval.reasons.map(r => h('li', {}, String(r)))
          )
        : null,
      dl,
      approval.can_decide ? this._actions(approval) : null
    );
  }

  /** Comment, Approve and Deny, for requests this user may decide. */
  private _actions(approval: IApproval): HTMLElement {
    const comment = h('input', {
      class: 'jp-gov-input',
      type: 'text',
      placeholder: 'Comment (kept in the audit log)',
      'aria-label': 'Comment'
    });
    const approve = h(
      'button',
      { class: 'jp-gov-button jp-mod-accept', type: 'button' },
      'Approve'
    );
    const deny = h(
      'button',
      { class: 'jp-gov-button jp-mod-warn', type: 'button' },
      'Deny'
    );
    const status = h('span', {
      class: 'jp-gov-approval-status',
      role: 'status'
    });
    const act = async (action: 'approve' | 'deny') => {
      approve.disabled = deny.disabled = true;
      setText(status, action === 'approve' ? 'Approving…' : 'Denying…');
      try {
        await requestAPI(
          `approvals/${encodeURIComponent(String(approval.id))}/${action}`,
          {},
          { method: 'POST', body: JSON.stringify({ comment: comment.value }) }
        );
        setText(status, action === 'approve' ? 'Approved' : 'Denied');
        void this._poll.refresh();
      } catch (error) {
        approve.disabled = deny.disabled = false;
        setText(status, error instanceof Error ? error.message : String(error));
      }
    };
    approve.addEventListener('click', () => void act('approve'));
    deny.addEventListener('click', () => void act('deny'));
    return h(
      'div',
      { class: 'jp-gov-approval-decide' },
      comment,
      h('div', { class: 'jp-gov-approval-actions' }, approve, deny, status)
    );
  }

  private _poll: Poll;
  private _offset = 0;
  private _state: HTMLSelectElement;
  private _controls: HTMLElement;
  private _pager: HTMLElement;
  private _range: HTMLElement;
  private _previous: HTMLButtonElement;
  private _next: HTMLButtonElement;
  private _intro: HTMLElement;
  private _coming: HTMLElement;
  private _list: HTMLUListElement;
  private _empty: HTMLElement;
  private _message: HTMLElement;
  private _items = new Map<string, HTMLLIElement>();
}

/** The flag of a run that skipped the approver (the audit records it as such). */
export function breakGlassFlag(): HTMLElement {
  return h(
    'span',
    {
      class: 'jp-gov-flag-break-glass',
      'data-testid': 'break-glass',
      title:
        'Break-glass: run at once on the requester’s own say-so, without an approver'
    },
    'BREAK-GLASS'
  );
}

/** How many requests the user may decide: the server's count across every page. */
export function actionableCount(page: IApprovalsPage): number {
  return typeof page.actionable === 'number'
    ? page.actionable
    : (page.approvals ?? []).filter(a => a.can_decide).length;
}
