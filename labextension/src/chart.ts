/**
 * A small stacked bar chart of events over time, one colour per decision badge.
 */
import type { Category, IStats } from './api';
import { formatFullTime, h, replaceChildren, svg } from './dom';

export const CATEGORY_LABELS: Record<Category, string> = {
  allowed: 'allowed',
  masked: 'masked',
  denied: 'denied',
  approval: 'approval',
  error: 'error'
};

const WIDTH = 240;
const HEIGHT = 48;

export class DecisionChart {
  readonly node: HTMLElement;

  constructor() {
    this.node = h('figure', {
      class: 'jp-gov-chart',
      'aria-label': 'Decisions over time'
    });
    this._plot = h('div', { class: 'jp-gov-chart-plot' });
    this._caption = h('figcaption', { class: 'jp-gov-chart-caption' });
    this.node.append(this._plot, this._caption);
  }

  /** Redraw only when the numbers changed, so a poll with nothing new touches nothing. */
  update(stats: IStats): void {
    const key = JSON.stringify([
      stats.bucket,
      stats.buckets.map(b => [b.start, b.counts])
    ]);
    if (key === this._key) {
      return;
    }
    this._key = key;
    const buckets = stats.buckets;
    const peak = Math.max(1, ...buckets.map(b => b.total));
    const slot = WIDTH / Math.max(1, buckets.length);
    const bar = Math.max(1, slot - 1.5);
    const chart = svg('svg', {
      class: 'jp-gov-chart-svg',
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: 'none',
      role: 'img'
    });
    chart.appendChild(
      svg('line', {
        class: 'jp-gov-chart-axis',
        x1: 0,
        x2: WIDTH,
        y1: HEIGHT - 0.5,
        y2: HEIGHT - 0.5
      })
    );
    buckets.forEach((bucket, index) => {
      let top = HEIGHT;
      const parts: string[] = [];
      const group = svg('g', { class: 'jp-gov-chart-bucket' });
      for (const name of stats.categories) {
        const count = bucket.counts[name] ?? 0;
        if (!count) {
          continue;
        }
        parts.push(`${count} ${CATEGORY_LABELS[name] ?? name}`);
        const height = (count / peak) * (HEIGHT - 2);
        top -= height;
        group.appendChild(
          svg('rect', {
            class: `jp-gov-chart-bar jp-gov-fill-${name}`,
            x: index * slot,
            y: top,
            width: bar,
            height
          })
        );
      }
      const summary = `${formatFullTime(bucket.start)}: ${parts.length ? parts.join(', ') : 'no events'}`;
      group.appendChild(svg('title', {}, summary));
      // A transparent full-height target so empty buckets have a tooltip too.
      group.appendChild(
        svg('rect', {
          class: 'jp-gov-chart-hit',
          x: index * slot,
          y: 0,
          width: slot,
          height: HEIGHT
        })
      );
      chart.appendChild(group);
    });
    const total = buckets.reduce((sum, b) => sum + b.total, 0);
    chart.appendChild(
      svg(
        'title',
        {},
        `${total} decisions in the last ${buckets.length} buckets`
      )
    );
    replaceChildren(this._plot, chart);

    const hours = (stats.bucket * buckets.length) / 3600;
    const span =
      hours >= 1 ? `${Math.round(hours)} h` : `${Math.round(hours * 60)} min`;
    const legend = h('span', { class: 'jp-gov-legend' });
    for (const name of stats.categories) {
      legend.append(
        h(
          'span',
          { class: 'jp-gov-legend-item' },
          h('span', { class: `jp-gov-swatch jp-gov-fill-${name}` }),
          CATEGORY_LABELS[name] ?? name
        )
      );
    }
    replaceChildren(
      this._caption,
      h(
        'span',
        { class: 'jp-gov-chart-total' },
        `${total} decisions · last ${span}`
      ),
      legend
    );
  }

  private _plot: HTMLElement;
  private _caption: HTMLElement;
  private _key = '';
}
