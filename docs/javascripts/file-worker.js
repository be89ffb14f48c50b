// Search from the file system. Opened as file://, a page may not start a Web Worker, and the
// theme's search runs in one. Where that is so, this stands in for `Worker`: the worker's script
// runs in a hidden iframe written in place (srcdoc, so it shares the page's origin), and the two
// exchange messages as a worker and its page do. The theme's offline plugin inlines the search
// index into search/search_index.js, which the page reads and hands to the worker.
(function () {
  if (location.protocol !== "file:") return;

  class FileWorker extends EventTarget {
    constructor(url) {
      super();
      this.queue = [];
      this.inner = null;
      const frame = document.createElement("iframe");
      frame.hidden = true;
      frame.setAttribute("aria-hidden", "true");
      const source = new URL(url, location.href).href;
      frame.srcdoc = "<!doctype html><script>window.postMessage = function (data) {"
        + " parent.__fileWorkerReply(window.frameElement, data); };</" + "script>"
        + "<script src=\"" + source.replace(/"/g, "&quot;") + "\"></" + "script>";
      frame.addEventListener("load", () => {
        this.inner = frame.contentWindow;
        this.queue.splice(0).forEach((data) => this.deliver(data));
      });
      frame.fileWorker = this;
      this.frame = frame;
      document.documentElement.appendChild(frame);
    }

    deliver(data) {
      this.inner.dispatchEvent(new this.inner.MessageEvent("message", { data: data }));
    }

    postMessage(data) {
      if (this.inner) this.deliver(data);
      else this.queue.push(data);
    }

    terminate() {
      this.frame.remove();
    }
  }

  window.__fileWorkerReply = function (frame, data) {
    const worker = frame.fileWorker;
    const event = new MessageEvent("message", { data: data });
    worker.dispatchEvent(event);
    if (typeof worker.onmessage === "function") worker.onmessage(event);
  };
  window.Worker = FileWorker;
})();
