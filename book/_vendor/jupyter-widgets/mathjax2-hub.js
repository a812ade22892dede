/* Written for this book; not part of html-manager (see PROVENANCE.txt).
 * @jupyter-widgets/base typesets widget labels with MathJax 2's API,
 * MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book runs MathJax 3, which has
 * no Hub, so every label threw a TypeError. This maps the call onto MathJax 3's
 * typesetPromise. Loaded before embed.js: its 'load' handler runs first. */
window.addEventListener("load", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub) return;
  mj.Hub = {
    Queue: function (job) {
      var element = Array.isArray(job) ? job[2] : undefined;
      var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
      ready.then(function () {
        if (mj.typesetPromise) return mj.typesetPromise(element ? [element] : undefined);
      }).catch(function (err) {
        console.warn("MathJax could not typeset a widget label:", err);
      });
    },
  };
});
