//! What needs no root: the command line, the manuals and completions, and the XDP object as
//! built (which instructions it holds), and what an operator moving from knockd meets.

mod cli;
mod manuals;
mod migrating;
mod object;
