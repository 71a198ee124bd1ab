/**
 * The Approvals tab: pending requests with Approve / Deny and a comment.
 *
 * It talks to `GET approvals?state=pending` (`{"approvals": [...]}`) and
 * `POST approvals/{id}/approve|deny` (`{"comment": ...}`). Until the approvals module lands
 * on the server those answer 404, and the tab says approvals are coming.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { ApiError, type IApproval, requestAPI } from './api';
import { formatFullTime, formatTime, h, setText } from './dom';

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
    this._list = h('ul', {
      class: 'jp-gov-approval-list',
      'aria-label': 'Pending approvals'
    });
    this._empty = h(
      'p',
      { class: 'jp-gov-empty', hidden: true },
      'No approvals are pending.'
    );
    this._message = h('div', {
      class: 'jp-gov-message',
      role: 'status',
      hidden: true
    });
    this.node.append(
      this._intro,
      this._coming,
      this._message,
      this._list,
      this._empty
    );
    this._poll = new Poll({
      auto: false,
      factory: () => this._refresh(),
      frequency: {
        interval: refreshInterval > 0 ? refreshInterval * 1000 : Poll.NEVER,
        max:
          refreshInterval > 0
            ? Math.max(60_000, refreshInterval * 6000)
            : Poll.NEVER,
        backoff: refreshInterval > 0
      },
      name: 'jupyter-gov:approvals',
      standby: () => !this.isVisible || 'when-hidden'
    });
  }

  set refreshInterval(seconds: number) {
    this._poll.frequency =
      seconds > 0
        ? {
            interval: seconds * 1000,
            max: Math.max(60_000, seconds * 6000),
            backoff: true
          }
        : { interval: Poll.NEVER, max: Poll.NEVER, backoff: false };
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

  private async _refresh(): Promise<void> {
    let approvals: IApproval[];
    try {
      const body = await requestAPI<{ approvals: IApproval[] }>('approvals', {
        state: 'pending'
      });
      approvals = body.approvals ?? [];
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this._coming.hidden = false;
        this._intro.hidden = true;
        this._list.hidden = true;
        this._empty.hidden = true;
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
    this._coming.hidden = true;
    this._intro.hidden = false;
    this._list.hidden = false;
    this._message.hidden = true;
    this._render(approvals);
  }

  private _render(approvals: IApproval[]): void {
    const wanted = new Set(approvals.map(a => String(a.id)));
    for (const [id, item] of this._items) {
      if (!wanted.has(id)) {
        item.remove();
        this._items.delete(id);
      }
    }
    let cursor = this._list.firstElementChild;
    for (const approval of approvals) {
      const id = String(approval.id);
      let item = this._items.get(id);
      if (!item) {
        item = this._makeItem(approval);
        this._items.set(id, item);
      }
      if (item === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        this._list.insertBefore(item, cursor);
      }
    }
    this._empty.hidden = approvals.length > 0;
  }

  private _makeItem(approval: IApproval): HTMLLIElement {
    const who =
      approval.display_name ||
      approval.requester ||
      approval.subject ||
      'someone';
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
    return h(
      'li',
      { class: 'jp-gov-approval', 'data-approval-id': String(approval.id) },
      h(
        'div',
        { class: 'jp-gov-approval-head' },
        h('strong', {}, who),
        approval.connection
          ? h('span', { class: 'jp-gov-muted' }, `on ${approval.connection}`)
          : null,
        when
      ),
      approval.statement
        ? h('pre', { class: 'jp-gov-detail-statement' }, approval.statement)
        : null,
      approval.reasons?.length
        ? h(
            'ul',
            { class: 'jp-gov-detail-reasons' },
            ...approval.reasons.map(r => h('li', {}, r))
          )
        : null,
      approval.expires_at
        ? h(
            'p',
            { class: 'jp-gov-muted' },
            `Expires ${formatFullTime(approval.expires_at)}`
          )
        : null,
      comment,
      h('div', { class: 'jp-gov-approval-actions' }, approve, deny, status)
    );
  }

  private _poll: Poll;
  private _intro: HTMLElement;
  private _coming: HTMLElement;
  private _list: HTMLUListElement;
  private _empty: HTMLElement;
  private _message: HTMLElement;
  private _items = new Map<string, HTMLLIElement>();
}
