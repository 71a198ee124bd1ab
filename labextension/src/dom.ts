/**
 * Tiny DOM helpers: the panel builds its nodes once and then updates them in place.
 *
 * Every string from the server becomes a text node or an attribute value through these
 * helpers (never markup: the panel has no `innerHTML`, and eslint refuses one), and is
 * passed through `reveal` on the way, so bidi overrides and zero-width characters show as
 * `⟨U+202E⟩` instead of reordering or hiding what an approver reads.
 */

type Child = Node | string | null | undefined | false;

/** Format (Cf), control (Cc, but newline and tab) and lone surrogate (Cs) characters. */
const HIDDEN = /(?![\n\t])[\p{Cf}\p{Cc}\p{Cs}]/gu;

/** `text` with invisible and reordering characters drawn as `⟨U+XXXX⟩`. */
export function reveal(text: string): string {
  return text.replace(
    HIDDEN,
    c => `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`
  );
}

/** `h('div', { class: 'x', title: 'y' }, child, ...)`: an element with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    node.setAttribute(name, value === true ? '' : reveal(String(value)));
  }
  append(node, ...children);
  return node;
}

export function append(node: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.appendChild(
      typeof child === 'string' ? document.createTextNode(reveal(child)) : child
    );
  }
}

/** Replace every child of `node` (one DOM mutation per child, no innerHTML). */
export function replaceChildren(node: Element, ...children: Child[]): void {
  node.replaceChildren();
  append(node, ...children);
}

/** Set a text only when it changed, so unchanged nodes are not touched at all. */
export function setText(node: Element, text: string): void {
  text = reveal(text);
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

export function setAttr(
  node: Element,
  name: string,
  value: string | null
): void {
  if (value === null) {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== reveal(value)) {
    node.setAttribute(name, reveal(value));
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  ...children: (Node | string)[]
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, reveal(String(value)));
  }
  append(node, ...children);
  return node;
}

/** `14:04` today, `3 Jan 14:04` this year, `3 Jan 2024 14:04` before (24-hour clock). */
export function formatTime(
  epochSeconds: number,
  now: Date = new Date()
): string {
  const date = new Date(epochSeconds * 1000);
  const time = date.toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23'
  });
  if (date.toDateString() === now.toDateString()) {
    return time;
  }
  const day = date.toLocaleDateString(undefined, {
    day: 'numeric',
    month: 'short',
    year: date.getFullYear() === now.getFullYear() ? undefined : 'numeric'
  });
  return `${day} ${time}`;
}

/** `14:04:05` for "updated at" lines. */
export function formatClock(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toLocaleTimeString(undefined, {
    hourCycle: 'h23'
  });
}

export function formatFullTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toLocaleString();
}
