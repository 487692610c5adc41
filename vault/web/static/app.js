// Progressive enhancement only: every task works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // After a refused form, take the keyboard to the first field in error.
  const invalid = document.querySelector("[aria-invalid='true']");
  if (invalid instanceof HTMLElement) {
    invalid.focus();
  }
});
