// What require('vscode') returns in tests: the stub, and for any other name
// (vscode-languageclient extends CompletionItem, CodeLens, ... at load) an
// empty class, so the real bundled extension loads.
import stub = require('./vscode-stub');

const fillers = new Map<string, unknown>();
export = new Proxy(stub, {
  get(target, key) {
    if (typeof key === 'symbol' || key in target || key === '__esModule' || key === 'then') {
      return (target as Record<string | symbol, unknown>)[key];
    }
    if (!fillers.has(key)) fillers.set(key, class {});
    return fillers.get(key);
  },
});
