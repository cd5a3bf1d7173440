# Sourced by .ci/run and the scripts that build (scripts/test.sh, scripts/fuzz.sh): routes every
# C and C++ compiler call through ccache when it is installed (scripts/install.sh installs it),
# so that librocksdb's C++ is compiled once per machine rather than once per cargo profile and
# target folder. Paths below $HOME are hashed relative to it, so the fuzz build's target folder
# reuses the objects of the test build's.
if [ -d /usr/lib/ccache ] && command -v ccache >/dev/null; then
    case ":$PATH:" in
    *:/usr/lib/ccache:*) ;;
    *) export PATH="/usr/lib/ccache:$PATH" ;;
    esac
    export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
    export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$HOME}"
    export CCACHE_NOHASHDIR=1
    export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
fi
