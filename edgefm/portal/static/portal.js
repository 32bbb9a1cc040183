// A re-created event stream starts again from the seq the page was rendered with: drop journal events
// that are already on the page, so a reconnect never shows one twice.
document.addEventListener("htmx:sseBeforeMessage", function (evt) {
  var message = evt.detail;
  if (!message || message.type !== "journal" || !message.lastEventId) return;
  if (document.querySelector('#events li[data-seq="' + message.lastEventId + '"]')) evt.preventDefault();
});
