// Live journal events arrive over SSE with their sequence number as the event id.
// A dropped stream is resumed two ways: the browser's own reconnect sends Last-Event-ID; when htmx has to open
// a new EventSource instead, it reads `sse-connect` again, so that URL is kept at the last event shown.
document.addEventListener("htmx:sseBeforeMessage", function (evt) {
  var message = evt.detail;
  if (!message || message.type !== "journal" || !message.lastEventId) return;
  // Already on the page (e.g. replayed to a new stream): show each event once.
  if (document.querySelector('#events li[data-seq="' + message.lastEventId + '"]')) evt.preventDefault();
});
document.addEventListener("htmx:sseMessage", function (evt) {
  var message = evt.detail;
  if (!message || message.type !== "journal" || !message.lastEventId) return;
  var source = evt.target.closest("[sse-connect]");
  if (!source) return;
  var url = new URL(source.getAttribute("sse-connect"), window.location.href);
  url.searchParams.set("after", message.lastEventId);
  source.setAttribute("sse-connect", url.pathname + url.search);
});
