/**
 * jupyter-gov's JupyterLab extension: a left sidebar (shield icon) with the audit log,
 * approvals and the policy of the governed SQL proxy.
 */
import {
  ILayoutRestorer,
  type JupyterFrontEnd,
  type JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { DEFAULT_AUDIT_OPTIONS, type IAuditOptions } from './audit';
import { GovSidebar, SIDEBAR_ID, type TabName } from './sidebar';

export { GovSidebar, SIDEBAR_ID } from './sidebar';

const PLUGIN_ID = 'jupyter-gov:plugin';

namespace CommandIDs {
  export const open = 'jupyter-gov:open';
}

function readOptions(settings: ISettingRegistry.ISettings): IAuditOptions {
  const get = (key: keyof IAuditOptions) => {
    const value = settings.get(key).composite;
    return typeof value === 'number' ? value : DEFAULT_AUDIT_OPTIONS[key];
  };
  return {
    refreshInterval: get('refreshInterval'),
    pageSize: get('pageSize'),
    statsBucket: get('statsBucket')
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Audit log, approvals and policy of jupyter-gov in a sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    const sidebar = new GovSidebar();
    app.shell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, SIDEBAR_ID);
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'Open the Governed SQL panel',
      caption: 'Show the jupyter-gov sidebar (audit, approvals, policy)',
      execute: args => {
        const tab = (args?.tab as TabName | undefined) ?? undefined;
        if (tab) {
          sidebar.showTab(tab);
        }
        app.shell.activateById(SIDEBAR_ID);
      }
    });

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            sidebar.options = readOptions(settings);
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.error(
            'jupyter-gov: the settings could not be loaded.',
            reason
          );
        });
    }
  }
};

export default plugin;
