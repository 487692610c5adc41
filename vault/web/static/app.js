// Progressive enhancement only: every task works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // After a refused form, take the keyboard to the first field in error.
  const invalid = document.querySelector("[aria-invalid='true']");
  if (invalid instanceof HTMLElement) {
    invalid.focus();
  }
  // A region that follows a job (an export being built): fetch this page again every few
  // seconds and put the region's new state in place, until the page stops asking for it.
  // Without script, the region's own "Actualiser" link does the same.
  const follow = (region) => {
    const seconds = Number(region.dataset.refresh);
    if (!region.id || !(seconds > 0)) {
      return;
    }
    window.setTimeout(async () => {
      let next = null;
      let retry = true;
      try {
        const response = await fetch(window.location.pathname, {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.ok) {
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          next = page.getElementById(region.id);
          // Signed out meanwhile, or the page changed: stop, the link still works.
          retry = false;
        } else if (response.status < 500) {
          // Refused (access withdrawn while the job ran) or gone: asking again every few
          // seconds would only add a refusal to the patient's history each time.
          retry = false;
        }
      } catch (error) {
        next = null;
      }
      if (next === null) {
        if (retry) {
          follow(region);
        }
        return;
      }
      region.replaceChildren(...Array.from(next.childNodes, (node) => document.importNode(node, true)));
      // A refusal shown with the old state (an export already running) is stale now.
      document.querySelectorAll("[data-refresh-clears]").forEach((element) => element.remove());
      if (next.dataset.refresh) {
        region.dataset.refresh = next.dataset.refresh;
        follow(region);
      } else {
        delete region.dataset.refresh;
      }
    }, seconds * 1000);
  };
  document.querySelectorAll("[data-refresh]").forEach(follow);
});
