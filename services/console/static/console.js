// Progressive enhancement only: every page works without it. Scrolls the timeline on by its cursor,
// shows new touches and segment changes without a reload (polling the console's own fragments).
"use strict";

const FRAGMENT = { headers: { "x-console-fragment": "1" }, credentials: "same-origin" };

async function fragment(url) {
  const response = await fetch(url, FRAGMENT);
  if (!response.ok) return null;
  const holder = document.createElement("template");
  holder.innerHTML = await response.text();
  return holder.content;
}

function timeline() {
  const list = document.getElementById("touches");
  if (!list) return;
  const base = list.dataset.rows + "?" + list.dataset.query;
  let loading = false;

  async function loadMore(more) {
    if (loading) return;
    loading = true;
    const rows = await fragment(base + "&cursor=" + encodeURIComponent(more.dataset.cursor));
    if (rows) more.replaceWith(rows);
    loading = false;
    watchMore();
  }

  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) if (entry.isIntersecting) loadMore(entry.target);
  });
  function watchMore() {
    const more = list.querySelector("li.more");
    if (!more) return;
    more.querySelector("button").addEventListener("click", () => loadMore(more), { once: true });
    observer.observe(more);
  }
  watchMore();

  async function newer() {
    const rows = await fragment(base);
    if (!rows) return;
    const shown = new Set([...list.querySelectorAll("li.touch")].map((li) => li.dataset.event));
    const fresh = [...rows.querySelectorAll("li.touch")].filter((li) => !shown.has(li.dataset.event));
    for (const li of fresh.reverse()) {
      li.classList.add("new");
      list.prepend(li);
    }
    if (fresh.length) document.getElementById("no-touches")?.remove();
  }
  setInterval(newer, 2000);
}

function segmentLive() {
  const live = document.getElementById("live");
  if (!live) return;
  setInterval(async () => {
    const content = await fragment(live.dataset.live);
    if (content) live.replaceChildren(content);
  }, 2000);
}

// After a consent change: refresh the status until the change has been applied.
function consentApplied() {
  const live = document.getElementById("consent-live");
  if (!live) return;
  const timer = setInterval(async () => {
    if (!live.querySelector("[data-pending]")) return clearInterval(timer);
    const content = await fragment(location.href);
    const fresh = content?.getElementById("consent-live");
    if (fresh) live.replaceChildren(...fresh.childNodes);
  }, 1500);
}

timeline();
segmentLive();
consentApplied();
