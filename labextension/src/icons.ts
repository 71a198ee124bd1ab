import { LabIcon } from '@jupyterlab/ui-components';

/** A shield with a check mark, drawn for jupyter-gov; `jp-icon3` follows the theme. */
const SHIELD_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path fill-rule="evenodd" d="M12 1.6 3.5 5v6.2c0 5.3 3.6 10 8.5 11.2 4.9-1.2 8.5-5.9 8.5-11.2V5L12 1.6Zm0 2.2 6.5 2.6v4.8c0 4.2-2.7 8-6.5 9.1-3.8-1.1-6.5-4.9-6.5-9.1V6.4L12 3.8Zm3.9 4.9-5 5.2-2.6-2.5-1.4 1.4 4 3.9 6.4-6.6-1.4-1.4Z"/>
  </g>
</svg>`;

export const shieldIcon = new LabIcon({
  name: 'jupyter-gov:shield',
  svgstr: SHIELD_SVG
});
