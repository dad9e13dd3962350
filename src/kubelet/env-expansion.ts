/**
 * `$(VAR)` expansion with the semantics of k8s.io/kubernetes
 * third_party/forked/golang/expansion, which the kubelet applies to `env[].value`, `command`
 * and `args`:
 *
 * - `$(NAME)` is replaced by the value of NAME when `lookup` knows it, and kept verbatim
 *   otherwise;
 * - `$$` is an escaped `$`, so `$$(NAME)` yields the literal `$(NAME)`;
 * - a `$` followed by anything else, an unterminated `$(`, or a trailing `$` is kept as is.
 *
 * Go walks bytes and we walk UTF-16 code units; the operators are ASCII, so the result is the
 * same for every valid string.
 */
export function expandEnvValue(
  input: string,
  lookup: (name: string) => string | undefined,
): string {
  let out = '';
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] !== '$' || cursor + 1 >= input.length) continue;
    out += input.slice(checkpoint, cursor);
    const next = input[cursor + 1];
    if (next === '$') {
      // Escaped operator.
      out += '$';
      cursor += 1;
    } else if (next === '(') {
      const close = input.indexOf(')', cursor + 2);
      if (close === -1) {
        // Incomplete reference: keep "$(" and carry on scanning after it.
        out += '$(';
        cursor += 1;
      } else {
        const name = input.slice(cursor + 2, close);
        out += lookup(name) ?? `$(${name})`;
        cursor = close;
      }
    } else {
      // A lone operator followed by an ordinary character.
      out += '$' + (next ?? '');
      cursor += 1;
    }
    checkpoint = cursor + 1;
  }
  return out + input.slice(checkpoint);
}
