/**
 * The Policy tab: what the server's policy says (roles, connections, masks, approval rules).
 *
 * It reads `GET policy`; its `you` part says what applies to the current user first:
 * their roles, the mask they get for each tag, and the approval rules that concern them.
 */
import { type IPolicySummary, requestAPI } from './api';
import { h } from './dom';
import { LoadedPanel } from './panel';

export class PolicyPanel extends LoadedPanel<IPolicySummary> {
  constructor() {
    super('jp-gov-policy');
    const refresh = h(
      'button',
      {
        class: 'jp-gov-button jp-gov-refresh',
        type: 'button',
        title: 'Reload the policy'
      },
      '↻'
    );
    refresh.addEventListener('click', () => void this.load());
    this.node.append(
      h('div', { class: 'jp-gov-policy-header' }, refresh),
      this.body
    );
  }

  protected fetch(): Promise<IPolicySummary> {
    return requestAPI<IPolicySummary>('policy');
  }

  protected render(summary: IPolicySummary): Node[] {
    return PolicyPanel.render(summary);
  }

  static render(summary: IPolicySummary): Node[] {
    if (summary.error) {
      return [
        h('div', { class: 'jp-gov-message', role: 'status' }, summary.error)
      ];
    }
    if (!summary.name) {
      return [
        h(
          'div',
          { class: 'jp-gov-coming', 'data-testid': 'policy-coming' },
          h('h3', {}, 'No policy configured for this server'),
          h(
            'p',
            {},
            'Set c.GovServer.policy (or JUPYTER_GOV_POLICY) to the policy file your kernels ' +
              'use, and this tab shows its roles, connections, masks and approval rules.'
          )
        )
      ];
    }
    const out: Node[] = [
      h(
        'div',
        { class: 'jp-gov-policy-title' },
        h('h3', {}, summary.name),
        h(
          'span',
          { class: 'jp-gov-muted', title: summary.hash ?? '' },
          `version ${summary.version ?? '?'}${summary.hash ? ` · ${summary.hash.slice(0, 12)}` : ''}`
        )
      )
    ];
    if (summary.origin) {
      out.push(h('p', { class: 'jp-gov-muted' }, summary.origin));
    }
    const you = summary.you;
    if (you && !you.error) {
      const yourMasks = Object.entries(you.masks ?? {});
      out.push(
        h('h4', {}, 'You'),
        h(
          'div',
          { class: 'jp-gov-policy-you', 'data-testid': 'policy-you' },
          h(
            'p',
            {},
            h('strong', {}, you.display_name ?? you.subject ?? '?'),
            ` (${you.verified ? 'verified' : 'unverified'}) · roles: ` +
              ((you.roles ?? []).join(', ') || 'none')
          ),
          yourMasks.length
            ? h(
                'ul',
                {},
                ...yourMasks.map(([tag, mask]) =>
                  h('li', {}, h('code', {}, tag), ` → ${mask}`)
                )
              )
            : null,
          (you.need_approval ?? []).length
            ? h(
                'p',
                { class: 'jp-gov-muted' },
                `Needs approval: ${(you.need_approval ?? []).join(', ')}`
              )
            : null,
          (you.approve ?? []).length
            ? h(
                'p',
                { class: 'jp-gov-muted' },
                `You approve: ${(you.approve ?? []).join(', ')}`
              )
            : null
        )
      );
    }
    const roles = summary.roles ?? [];
    if (roles.length) {
      const details = summary.role_details ?? {};
      out.push(
        h('h4', {}, 'Roles'),
        h(
          'ul',
          { class: 'jp-gov-policy-roles' },
          ...roles.map(name => {
            const role = details[name] ?? {};
            const facts = [role.access, role.approve ? 'approves' : null]
              .filter(Boolean)
              .join(' · ');
            return h(
              'li',
              {},
              h('code', { class: 'jp-gov-chip' }, name),
              facts ? h('span', { class: 'jp-gov-muted' }, ` ${facts}`) : null,
              role.description ? h('div', {}, role.description) : null
            );
          })
        )
      );
    }
    const connections = Object.entries(summary.connections ?? {});
    if (connections.length) {
      out.push(
        h('h4', {}, 'Connections'),
        h(
          'ul',
          {},
          ...connections.map(([name, c]) =>
            h(
              'li',
              {},
              h('code', {}, name),
              c.environment
                ? h('span', { class: 'jp-gov-muted' }, ` ${c.environment}`)
                : null,
              c.description ? h('div', {}, c.description) : null
            )
          )
        )
      );
    }
    const masks = Object.entries(summary.masks ?? {});
    if (masks.length) {
      out.push(
        h('h4', {}, 'Masks'),
        h(
          'table',
          { class: 'jp-gov-detail-masked' },
          h(
            'thead',
            {},
            h('tr', {}, h('th', {}, 'Tag'), h('th', {}, 'Per role'))
          ),
          h(
            'tbody',
            {},
            ...masks.map(([tag, perRole]) =>
              h(
                'tr',
                {},
                h('td', {}, h('code', {}, tag)),
                h(
                  'td',
                  {},
                  Object.entries(perRole)
                    .map(([role, mask]) => `${role}: ${mask}`)
                    .join(', ')
                )
              )
            )
          )
        )
      );
    }
    const rules = summary.approval_rules ?? [];
    if (rules.length) {
      out.push(
        h('h4', {}, 'Approval rules'),
        h(
          'ul',
          {},
          ...rules.map(rule =>
            h(
              'li',
              {},
              h('code', {}, rule.id),
              ` ${rule.description}`,
              h(
                'div',
                { class: 'jp-gov-muted' },
                `approvers: ${rule.approvers.join(', ')}`
              )
            )
          )
        )
      );
    }
    // pii: columns nobody classified that unclassified: auto found (from the audit)
    const found = summary.pii_findings;
    if (found && found.length) {
      out.push(
        h('h4', {}, 'Found by PII detection'),
        h(
          'ul',
          { 'data-testid': 'policy-pii' },
          ...found.map(f =>
            h(
              'li',
              {},
              h('code', {}, `${f.table}.${f.column}`),
              ` looks like ${f.tag}${f.proposed ? ' (proposed)' : ': masked'}`,
              h(
                'div',
                { class: 'jp-gov-muted' },
                `confidence ${(f.confidence ?? 0).toFixed(2)} · ${f.sample_size ?? 0} sampled` +
                  (f.connection ? ` · ${f.connection}` : '')
              )
            )
          )
        )
      );
    }
    return out;
  }
}
