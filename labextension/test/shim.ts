// What jsdom lacks and Lumino touches when its modules load (as @jupyterlab/testing's shim).
if (typeof MouseEvent !== 'undefined' && typeof DragEvent === 'undefined') {
  (globalThis as { DragEvent?: unknown }).DragEvent = class extends (
    MouseEvent
  ) {};
}
