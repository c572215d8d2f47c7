// Page state shared by the router and the pages: what is on screen, unsaved-edit guards,
// timers, and navigation (the router registers itself here, so pages never import it).

import { h } from "./dom.js";

export const state = {
  accounts: null, // names, once loaded
  account: null,
  seq: 0, // render generation: async work of an older page checks ctx.alive()
  leaveGuard: null, // () => true when the current page has unsaved edits
  onSave: null, // Ctrl+S on the current page
  timers: [],
  currentHash: "",
};

let render = async () => {};

/** The router registers its render function; pages call ``route()`` to re-render. */
export function setRouter(fn) {
  render = fn;
}

/** Re-render the page of the current hash (from the server). */
export function route() {
  return render();
}

/** "Revert": drop unsaved edits by re-rendering the current route from the server. */
export function revertButton() {
  return h(
    "button",
    {
      type: "button",
      testid: "revert",
      onclick: () => {
        state.leaveGuard = null;
        route();
      },
    },
    "Revert",
  );
}

export function every(ms, fn) {
  state.timers.push(setInterval(fn, ms));
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function setHashQuietly(hash) {
  history.replaceState(null, "", hash);
  state.currentHash = location.hash;
}
