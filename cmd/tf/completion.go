package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Shell completion: bash and zsh ask tf itself for the words that fit
// (urfave/cli's --generate-bash-completion), so they know every command
// and flag of the binary they run; fish gets a generated script.
const bashCompletion = `# tf completion for bash: eval "$(tf completion bash)"
_tf_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ $cur == -* ]]; then words+=("$cur"); fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null | cut -d: -f1)" -- "$cur"))
}
complete -o bashdefault -o default -F _tf_complete tf
`

const zshCompletion = `#compdef tf
# tf completion for zsh: eval "$(tf completion zsh)", or save as _tf in $fpath
_tf() {
  local -a opts
  local cur=${words[CURRENT]}
  local -a ask=(${words[1,CURRENT-1]})
  [[ $cur == -* ]] && ask+=($cur)
  opts=("${(@f)$(${ask[@]} --generate-bash-completion 2>/dev/null)}")
  if [[ -n ${opts[1]} ]]; then
    _describe 'tf' opts
  else
    _files
  fi
}
if (( $+functions[compdef] )); then compdef _tf tf; fi
`

func init() {
	register(&cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `   eval "$(tf completion bash)"     # in ~/.bashrc
   eval "$(tf completion zsh)"      # in ~/.zshrc, after compinit
   tf completion fish > ~/.config/fish/completions/tf.fish`,
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return usageError(c, "%v", err)
			}
			if len(args) != 1 {
				return usageError(c, "name the shell: bash, zsh or fish")
			}
			switch args[0] {
			case "bash":
				_, err = fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				_, err = fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				var s string
				if s, err = c.App.ToFishCompletion(); err == nil {
					_, err = fmt.Fprint(c.App.Writer, s)
				}
			default:
				msg := fmt.Sprintf("no completion for shell %q", args[0])
				if s := closest(args[0], []string{"bash", "zsh", "fish"}, 1); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q?)", s[0])
				}
				return usageError(c, "%s", msg)
			}
			return err
		},
	})
}
