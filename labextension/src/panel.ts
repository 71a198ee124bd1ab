/**
 * What the sidebar's tabs share: how often they poll, and the tab that shows one GET
 * answer (loaded when first shown, again on demand, a one-sentence message on failure).
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { explainError } from './api';
import { h, replaceChildren } from './dom';

/** Poll frequency for a refresh interval in seconds (0 means only on demand). */
export function pollFrequency(seconds: number): {
  interval: number;
  max: number;
  backoff: boolean;
} {
  if (!seconds || seconds <= 0) {
    return { interval: Poll.NEVER, max: Poll.NEVER, backoff: false };
  }
  const interval = seconds * 1000;
  return {
    interval,
    max: Math.max(interval, 60_000, interval * 6),
    backoff: true
  };
}

/**
 * A tab showing one answer of the server: `fetch` asks for it, `render` turns it into
 * nodes for the body. Loaded the first time the tab is shown and on `load()`; a failure
 * replaces the body with the reason, in one sentence.
 */
export abstract class LoadedPanel<T> extends Widget {
  constructor(className: string) {
    super();
    this.addClass(className);
    this.body = h('div', { class: `${className}-body` });
  }

  /** Fetch the answer and show it. */
  async load(): Promise<void> {
    let value: T;
    try {
      value = await this.fetch();
    } catch (error) {
      replaceChildren(
        this.body,
        h(
          'div',
          { class: 'jp-gov-message', role: 'status' },
          explainError(error)
        )
      );
      return;
    }
    this._loaded = true;
    replaceChildren(this.body, ...this.render(value));
  }

  /** Whether an answer has been shown (a failure does not count: showing retries). */
  get loaded(): boolean {
    return this._loaded;
  }

  protected abstract fetch(): Promise<T>;

  protected abstract render(value: T): Node[];

  protected onAfterShow(): void {
    if (!this._loaded) {
      void this.load();
    }
  }

  protected readonly body: HTMLDivElement;
  private _loaded = false;
}
