/**
 * The sidebar: a title, then tabs Audit / Approvals / Policy / Report over a stacked body.
 */
import { Poll } from '@lumino/polling';
import { Panel, StackedPanel, Widget } from '@lumino/widgets';

import { type IApprovalsPage, requestAPI } from './api';

import { ApprovalsPanel, actionableCount } from './approvals';
import { AuditPanel, type IAuditOptions } from './audit';
import { h } from './dom';
import { shieldIcon } from './icons';
import { PolicyPanel } from './policy';
import { ReportPanel } from './report';

export const SIDEBAR_ID = 'jupyter-gov:sidebar';

export type TabName = 'audit' | 'approvals' | 'policy' | 'report';

export class GovSidebar extends Panel {
  constructor(options: Partial<IAuditOptions> = {}) {
    super();
    this.id = SIDEBAR_ID;
    this.addClass('jp-gov-sidebar');
    this.title.icon = shieldIcon;
    this.title.caption = 'Governed SQL: audit, approvals, policy';

    this.audit = new AuditPanel(options);
    this.approvals = new ApprovalsPanel(options.refreshInterval ?? 5);
    this.policy = new PolicyPanel();
    this.report = new ReportPanel();

    const header = new Widget({
      node: h(
        'header',
        { class: 'jp-gov-sidebar-header' },
        h('h2', { class: 'jp-gov-sidebar-title' }, 'Governed SQL')
      )
    });
    const tabs = h('div', {
      class: 'jp-gov-tabs',
      role: 'tablist',
      'aria-label': 'jupyter-gov'
    });
    const entries: [TabName, string, Widget][] = [
      ['audit', 'Audit', this.audit],
      ['approvals', 'Approvals', this.approvals],
      ['policy', 'Policy', this.policy],
      ['report', 'Report', this.report]
    ];
    this._stack = new StackedPanel();
    this._stack.addClass('jp-gov-stack');
    for (const [name, label, widget] of entries) {
      widget.id = `jupyter-gov-${name}`;
      widget.node.setAttribute('role', 'tabpanel');
      const tab = h(
        'button',
        {
          class: 'jp-gov-tab',
          type: 'button',
          role: 'tab',
          id: `jupyter-gov-tab-${name}`,
          'aria-controls': widget.id,
          'data-tab': name
        },
        label
      );
      if (name === 'approvals') {
        tab.append(this._badge);
      }
      widget.node.setAttribute('aria-labelledby', tab.id);
      tab.addEventListener('click', () => this.showTab(name));
      tabs.append(tab);
      this._tabs.set(name, [tab, widget]);
      this._stack.addWidget(widget);
    }
    tabs.addEventListener('keydown', event => this._onTabKey(event));
    header.node.append(tabs);
    this.addWidget(header);
    this.addWidget(this._stack);
    this.showTab('audit');
    // Count the requests this user may decide, whichever tab is showing: the approvals
    // panel reports the count with each of its refreshes, and this poll asks only while
    // that panel is hidden, so one endpoint is never polled twice.
    this.approvals.onActionable = count => this._showCount(count);
    this._countPoll = new Poll({
      auto: true,
      factory: () => this._countPending(),
      frequency: { interval: 10_000, max: 120_000, backoff: true },
      name: 'jupyter-gov:approvals-count',
      standby: () => this.approvals.isVisible || 'when-hidden'
    });
  }

  dispose(): void {
    if (!this.isDisposed) {
      this._countPoll.dispose();
      super.dispose();
    }
  }

  private async _countPending(): Promise<void> {
    const body = await requestAPI<IApprovalsPage>('approvals', {
      state: 'pending',
      limit: 1
    });
    this._showCount(actionableCount(body));
  }

  private _showCount(count: number): void {
    this._badge.textContent = String(count);
    this._badge.hidden = count === 0;
    this._badge.title = `${count} request(s) you may approve`;
  }

  private _badge = h('span', {
    class: 'jp-gov-badge jp-gov-count',
    'data-testid': 'approvals-count',
    hidden: true
  });
  private _countPoll: Poll;

  readonly audit: AuditPanel;
  readonly approvals: ApprovalsPanel;
  readonly policy: PolicyPanel;
  readonly report: ReportPanel;

  get current(): TabName {
    return this._current;
  }

  /** Show one tab; the others stand by (their polls pause while hidden). */
  showTab(name: TabName): void {
    this._current = name;
    for (const [tabName, [tab, widget]] of this._tabs) {
      const selected = tabName === name;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      tab.classList.toggle('jp-mod-current', selected);
      if (selected) {
        widget.show();
      } else {
        widget.hide();
      }
    }
  }

  set options(options: Partial<IAuditOptions>) {
    this.audit.options = options;
    if (options.refreshInterval !== undefined) {
      this.approvals.refreshInterval = options.refreshInterval;
    }
  }

  private _onTabKey(event: KeyboardEvent): void {
    const names = [...this._tabs.keys()];
    const index = names.indexOf(this._current);
    let next: number;
    if (event.key === 'ArrowRight') {
      next = (index + 1) % names.length;
    } else if (event.key === 'ArrowLeft') {
      next = (index - 1 + names.length) % names.length;
    } else {
      return;
    }
    event.preventDefault();
    this.showTab(names[next]);
    this._tabs.get(names[next])![0].focus();
  }

  private _stack: StackedPanel;
  private _tabs = new Map<TabName, [HTMLButtonElement, Widget]>();
  private _current: TabName = 'audit';
}
