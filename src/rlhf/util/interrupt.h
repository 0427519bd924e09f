// Ctrl-C (SIGINT) and SIGTERM during a long command: the program prints one line saying what
// was kept and which command continues, then exits at once with 128 + the signal (130, 143).
// The work itself is safe to kill at any moment (atomic files, fsynced partial outputs); the
// line is kept current by the command as it goes, pre-formatted, so that the handler only
// writes it (write(2) is async-signal-safe; formatting is not).
#pragma once
#include <string>
#include <string_view>

namespace rlhf::interrupt {

// Installs the handlers (once, in main). `continue_command` is the command line that continues
// this one after an interruption (the same, or with --resume added; see quote_command_line),
// "" when nothing does.
void install(std::string continue_command);

// argv as one shell command line, each argument quoted where the shell would need it.
std::string quote_command_line(int argc, const char* const* argv);

// The line printed when interrupted (without "\n"). Starts as "rlhf: interrupted; nothing was
// kept". Thread-safe; the handler never sees a half-written line.
void set_note(std::string_view note);

// The line as it would be printed now.
std::string current_note();

// The command that continues this one ("" when none was given to install).
const std::string& continue_command();

// Sets the note to "rlhf: interrupted; <what_was_kept>; continue with: <continue_command>"
// (without the last part when there is no continue command).
void note_kept(std::string_view what_was_kept);

}  // namespace rlhf::interrupt
