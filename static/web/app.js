// The automation pages work without this file; it only makes them quicker to use:
// a run's steps load when its row is opened, "Load more" appends the next page in place,
// and selects marked data-autosubmit submit their form on change.
(function () {
  "use strict";

  async function fragment(url) {
    const response = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return response.text();
  }

  function loadSteps(details) {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    const target = details.querySelector(".steps");
    target.setAttribute("aria-busy", "true");
    target.textContent = "Loading the steps…";
    fragment(details.dataset.steps).then(function (html) {
      target.innerHTML = html;
    }).catch(function (error) {
      delete details.dataset.loaded;
      target.textContent = "The steps could not be loaded (" + error.message + "). Close and open the row to try again.";
    }).finally(function () { target.removeAttribute("aria-busy"); });
  }

  // A run that changed while its row is open: its steps are loaded again (live.js).
  document.addEventListener("live:update", function (event) {
    const changed = (event.detail && event.detail.changed) || [];
    document.querySelectorAll("details.run[open][data-loaded]").forEach(function (details) {
      if (!changed.includes(details.id.replace("run-", ""))) return;
      delete details.dataset.loaded;
      loadSteps(details);
    });
  });

  document.addEventListener("toggle", function (event) {
    const details = event.target;
    if (details.matches && details.matches("details.run")) loadSteps(details);
  }, true);

  document.addEventListener("click", function (event) {
    const link = event.target.closest && event.target.closest("a.load-more");
    if (!link) return;
    const rows = document.getElementById("run-rows");
    if (!rows) return;
    event.preventDefault();
    link.textContent = "Loading…";
    const url = new URL(link.href, window.location.href);
    url.searchParams.set("fragment", "1");
    fragment(url.toString()).then(function (html) {
      const holder = link.closest(".more");
      const template = document.createElement("template");
      template.innerHTML = html;
      const first = template.content.querySelector("details.run");
      holder.replaceWith(template.content);
      if (first) first.querySelector("summary").focus();
    }).catch(function (error) {
      link.textContent = "Load more (failed: " + error.message + "; try again)";
    });
  });

  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-autosubmit]")) event.target.form.submit();
  });
})();
