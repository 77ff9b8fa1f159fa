// Injected into every page the browser backend opens (Playwright add_init_script).
//
// Link clicks and form submissions stay real DOM events; this script only changes what their
// default action does: instead of a full navigation it fetches the target from the same origin
// (the env's site server) and swaps the document element in place. That saves a navigation (new
// document, style and layout from scratch) per step; the page the agent sees is the same HTML
// either way. The current URL is kept here (state.url) and links resolve against it:
// history.pushState would keep location in step but costs ~14 ms of browser CPU per step.
(() => {
  if (window.__rlft) return;
  const norm = (s) => s.replace(/\s+/g, " ").trim();
  const squash = (s) => s.replace(/\s+/g, "").toLowerCase();
  const SKIP = "[hidden], head, script, style, template, noscript, title";
  const state = { pending: null, url: location.href };

  function serialize() {
    return (document.doctype ? "<!DOCTYPE html>" : "") + document.documentElement.outerHTML;
  }

  async function load(url, timeoutMs) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    try {
      const resp = await fetch(url, { signal: ctrl.signal, cache: "no-store" });
      const body = await resp.text();
      if (!resp.ok) return { status: resp.status, error: body };
      const doc = new DOMParser().parseFromString(body, "text/html");
      document.replaceChild(document.adoptNode(doc.documentElement), document.documentElement);
      state.url = resp.url || url;
      if (window.scrollX || window.scrollY) window.scrollTo(0, 0);
      return { status: resp.status };
    } catch (e) {
      return { status: 0, timeout: ctrl.signal.aborted, error: String(e) };
    } finally {
      clearTimeout(timer);
    }
  }

  // The first a / button (not a form's submit button) whose label is `label`.
  function findClickable(label) {
    const candidates = [...document.querySelectorAll("a, button")].filter(
      (el) => !(el.tagName === "BUTTON" && el.type === "submit") && !el.closest(SKIP),
    );
    return (
      candidates.find((el) => norm(el.textContent) === label) ||
      candidates.find((el) => squash(el.textContent) === squash(label)) ||
      null
    );
  }

  function searchInput() {
    return document.querySelector(
      'form input[type="text"], form input[type="search"], form input:not([type])',
    );
  }

  // The site is all there is: a link off it leads nowhere (the text backend: page not found).
  const sameSite = (url) => url.origin === new URL(state.url).origin;
  const offSite = async (url) => ({ status: 404, error: `no page at ${url.href} (off-site)` });

  let timeoutMs = 10000;
  document.addEventListener(
    "click",
    (ev) => {
      if (ev.defaultPrevented || ev.button !== 0) return;
      const el = ev.target.closest && ev.target.closest("a[href], button[data-href]");
      if (!el) return;
      const url = new URL(el.getAttribute("href") || el.dataset.href, state.url);
      ev.preventDefault();
      state.pending = sameSite(url) ? load(url.href, timeoutMs) : offSite(url);
    },
    true,
  );
  document.addEventListener(
    "submit",
    (ev) => {
      const form = ev.target;
      if ((form.method || "get").toLowerCase() !== "get") return;
      const url = new URL(form.getAttribute("action") || state.url, state.url);
      url.search = new URLSearchParams(new FormData(form)).toString();
      ev.preventDefault();
      state.pending = sameSite(url) ? load(url.href, timeoutMs) : offSite(url);
    },
    true,
  );

  // One call per step: do the action in the page, wait for the page it leads to, return it.
  async function act(kind, arg, timeout) {
    timeoutMs = timeout;
    state.pending = null;
    if (kind === "click") {
      const el = findClickable(arg);
      if (!el) return { missing: true };
      el.click();
    } else if (kind === "search") {
      const input = searchInput();
      if (!input) return { missing: true };
      input.focus();
      input.value = arg;
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.dispatchEvent(new Event("change", { bubbles: true }));
      input.form.requestSubmit();
    } else if (kind === "goto") {
      state.pending = load(new URL(arg, state.url).href, timeoutMs);
    }
    const result = state.pending ? await state.pending : { status: 200, stayed: true };
    state.pending = null;
    const here = new URL(state.url);
    return { ...result, url: here.pathname + here.search, html: serialize() };
  }

  window.__rlft = { act, serialize };
})();
