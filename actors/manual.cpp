#include "actors/manual.hpp"

#include "core/config.hpp"
#include "providers/registry.hpp"

#include <string_view>

namespace cloudbrain {

namespace {

constexpr const char* synopsis = R"(SYNOPSIS
    cloudbrain serve [--config FILE] [--check-config] [--OPTION VALUE]...
    cloudbrain token create [--role client|driver|admin] [--scope own|all] DESCRIPTION
                            [--database-url URL]
    cloudbrain token list [--database-url URL]
    cloudbrain token revoke ID [--database-url URL]
    cloudbrain-create-token DESCRIPTION
    cloudbrain usage [--from TIME] [--to TIME] [--group-by KEYS] [--tag KEY=VALUE]...
                     [--provider NAME] [--format table|csv|json] [--config FILE]
                     [--database-url URL]
    cloudbrain audit [--limit N] [--token ID] [--action NAME] [--before ID] [--json]
                     [--database-url URL]
    cloudbrain routes [--config FILE] [--OPTION VALUE]...
    cloudbrain --help | --version
)";

constexpr const char* description = R"(DESCRIPTION
    cloudbrain serves one HTTP API to create, inspect and delete VM instances and capacity
    reservations on several clouds. It is one process of message-passing actors on one event
    loop, with its state in PostgreSQL; more processes on the same database share the work.
    Clients authenticate with the API tokens that `cloudbrain token create` makes.
)";

constexpr const char* serve_command = R"(    serve
        Serves the HTTP API until SIGTERM or SIGINT. It waits up to 30 seconds for PostgreSQL,
        refuses to start while the database's schema is behind the binary, then listens.
        /livez, /readyz and /metrics (Prometheus' text format) are served on listen, or on
        admin-listen alone when it is set.
)";

constexpr const char* token_commands = R"(    token create [--role ROLE] [--scope SCOPE] DESCRIPTION
        Creates a token and prints it, once, as "generated token: ID-SECRET". Only a salt and
        the scrypt hash of the secret are stored. ROLE is client (the default: the HTTP API),
        driver (an out-of-tree driver connecting at /drivers/connect, and nothing else) or
        admin (the HTTP API over everything, and GET /tokens, DELETE /tokens/ID, GET /audit).
        SCOPE, for a client token: own (the default) sees and acts on only the instances,
        reservations and reservation sets it created; all sees every one.
    token list
        Lists the tokens: id, creation time, revocation time, role, scope and description.
    token revoke ID
        Revokes a token; every process serving the database refuses it within 5 seconds.
        (DELETE /tokens/ID does the same for an admin token.)
    cloudbrain-create-token DESCRIPTION
        The same as `token create`, under the original tool's name.

    The token commands read the database from --database-url URL, CLOUDBRAIN_DATABASE_URL or
    DATABASE_URL.
    usage
        Prints what ran, what was reserved, what of that stood unused and what it cost over
        [--from, --to) (default: the last 24 hours), one line per group (--group-by provider,
        instance_type and tag.KEY; default provider,instance_type) and a total: the report of
        GET /usage, read from the database as the token commands read it. --tag KEY=VALUE and
        --provider NAME narrow it; --format csv or json prints what GET /usage answers. Costs
        come from the prices of the configuration given with --config (or CLOUDBRAIN_CONFIG).
    audit
        Prints the audit trail, newest first: every POST and DELETE the API answered (token,
        request id, client address, route, what it acted on, status and outcome) and every
        token create and revoke of these commands. --token ID and --action NAME (a route's
        name such as instances.create, or token.create) narrow it; --limit N (100) lines, then
        `--before ID` for the next ones; --json prints what GET /audit answers.
    routes
        Prints the HTTP routes serve would answer with the same options, one "METHOD PATTERN
        NAME" a line, without touching the database or a cloud.
)";

constexpr const char* serve_flags = R"(    --check-config
        Reads and checks the configuration, every provider section included, prints what it
        found and exits 0, or names the first problem and exits 2. It touches neither the
        database nor a cloud.
    --help
        Prints the parts of this manual about serve.
)";

constexpr const char* configuration_file = R"(CONFIGURATION FILE
    An INI file (--config FILE). The options above are written `key = value` at its top, a
    duration as 250ms, 30s, 10m, 2h or 7d, and # starts a comment. Each provider is a section,
    named as clients name it in requests:

        [provider.gce]
        type = fake
        zones = zone-a zone-b

    Every section has `type` (see PROVIDER TYPES), `zones` (tried in this order),
    `rate-limit` (cloud calls per second, 20), `max-in-flight` (50), `endpoint`, the cost
    guards `max-reserved-instances` (1000) and `max-reservation-duration` (7d), and the prices
    of an instance-hour for usage reports and the spend estimate: `standard-price-per-hour`,
    `premium-price-per-hour` and `reserved-price-per-hour` (decimals such as 0.095, in the
    top-level `currency`); the other keys belong to its type. An unknown key or a bad value
    stops serve with a message naming it.

    In a value, ${CREDENTIALS_DIRECTORY} stands for the directory in which systemd hands the
    service the files of its LoadCredential= lines:

        credentials = ${CREDENTIALS_DIRECTORY}/cloud_gce-staging.json

    /usr/share/doc/cloudbrain/examples/cloudbrain.conf.example explains every key.
)";

constexpr const char* environment = R"(ENVIRONMENT
    CLOUDBRAIN_<OPTION>
        Any option of serve, e.g. CLOUDBRAIN_LISTEN or CLOUDBRAIN_LOG_LEVEL.
    CLOUDBRAIN_CONFIG
        The configuration file, when --config is not given.
    DATABASE_URL
        The PostgreSQL URL, when neither --database-url nor CLOUDBRAIN_DATABASE_URL is set.
    CREDENTIALS_DIRECTORY
        Set by systemd; replaces ${CREDENTIALS_DIRECTORY} in the configuration file.
    NOTIFY_SOCKET, WATCHDOG_USEC
        Set by systemd (Type=notify, WatchdogSec=). serve sends READY=1 once it listens, reaches
        PostgreSQL and finds the schema deployed; WATCHDOG=1 from its event loop every half
        WATCHDOG_USEC, so that systemd restarts a wedged loop; STOPPING=1 as it shuts down.
)";

constexpr const char* signals = R"(SIGNALS
    SIGTERM, SIGINT
        Stop accepting connections, finish the requests and cloud calls in flight for up to
        shutdown-timeout, and exit.
    SIGHUP
        Read the configuration again (systemctl reload cloudbrain) without dropping a request:
        providers new to the file are served at once and log-level applies; a changed or
        removed provider section and the other keys are named in the log and keep their running
        values until a restart. A file that does not read, or a new section its driver refuses,
        is refused whole: nothing changes, and the log says why. systemd hears RELOADING=1,
        then READY=1 with the outcome in STATUS.
)";

constexpr const char* files = R"(FILES
    /etc/cloudbrain/cloudbrain.conf
        The configuration of the systemd unit. As installed, every key is commented out, with
        its default and what it means.
    /etc/cloudbrain/cloudbrain.env
        The units' environment, if it exists: DATABASE_URL=postgresql://USER@HOST/DATABASE.
    /etc/cloudbrain/credentials/
        Cloud key files, readable by root only. The unit hands each file NAME in it to the
        service as ${CREDENTIALS_DIRECTORY}/cloud_NAME.
    /usr/share/cloudbrain/schema/
        The Sqitch project of the database schema.
    /lib/systemd/system/cloudbrain.service
        The service: Type=notify, a watchdog, a dynamic user and a strict sandbox.
    /lib/systemd/system/cloudbrain-schema.service
        Runs `sqitch deploy` (/usr/lib/cloudbrain/cloudbrain-schema-deploy) to the database of
        the configuration before every start of cloudbrain.service, so that an upgraded binary
        finds its schema.
)";

constexpr const char* exit_status = R"(EXIT STATUS
    0
        Success; for serve, a clean shutdown after SIGTERM or SIGINT.
    1
        A failure while running: the database could not be reached, its schema is behind, the
        address could not be bound.
    2
        Bad usage or a bad configuration; the message names the option.
)";

constexpr const char* examples = R"(EXAMPLES
    Check a configuration, then serve it:

        cloudbrain serve --config /etc/cloudbrain/cloudbrain.conf --check-config
        cloudbrain serve --config /etc/cloudbrain/cloudbrain.conf

    Serve on another port, with the database from the environment:

        DATABASE_URL=postgresql://cloudbrain@localhost/cloudbrain \
          cloudbrain serve --config cloudbrain.conf --listen 127.0.0.1:9090

    Make a token and start a VM with it:

        cloudbrain token create "ci worker"
        curl -H "Authorization: token $TOKEN" -H 'Content-Type: application/json' \
          -d '{"provider":"gce","image":"debian-12"}' http://127.0.0.1:8080/instances

    What the runs tagged run=nightly-42 used and cost last week, by provider:

        cloudbrain usage --config /etc/cloudbrain/cloudbrain.conf --tag run=nightly-42 \
          --from 2025-06-02T00:00:00Z --to 2025-06-09T00:00:00Z --group-by provider

    Deploy the schema by hand, as cloudbrain-schema.service does, or with Sqitch itself:

        /usr/lib/cloudbrain/cloudbrain-schema-deploy /etc/cloudbrain/cloudbrain.conf
        cd /usr/share/cloudbrain/schema && sqitch deploy db:pg://cloudbrain@localhost/cloudbrain
)";

constexpr const char* see_also = R"(SEE ALSO
    sqitch(1), systemctl(1), systemd.exec(5), systemd.service(5); the HTTP API is described in
    /usr/share/doc/cloudbrain/README.md.
)";

// The provider types this binary was built with, each with its own keys.
std::string provider_types() {
  std::string out = "PROVIDER TYPES\n";
  for (const auto* kind : providers::cloud_kinds()) {
    out += "    type = ";
    out += kind->type;
    out += "\n        ";
    out += kind->summary;
    out += ".\n";
    if (!kind->keys.empty()) {
      out += "\n";
      out += kind->keys;
    }
    out += "\n";
  }
  out.pop_back();
  return out;
}

std::string environment_section() {
  std::string out = environment;
  for (const auto* kind : providers::cloud_kinds()) out += kind->environment;
  return out;
}

}  // namespace

std::string manual_page() {
  std::string out =
      "NAME\n"
      "    cloudbrain - one HTTP API for cloud VM instances and capacity reservations\n\n";
  out += synopsis;
  out += "\n";
  out += description;
  out += "\nCOMMANDS\n";
  out += serve_command;
  out += token_commands;
  out += "\nSERVE OPTIONS\n";
  out += serve_flags;
  out += config_help();
  for (const std::string& part :
       {std::string(configuration_file), provider_types(), environment_section(),
        std::string(signals), std::string(files), std::string(exit_status), std::string(examples),
        std::string(see_also)}) {
    out += "\n";
    out += part;
  }
  return out;
}

std::string serve_manual() {
  std::string out =
      "NAME\n"
      "    cloudbrain serve - serve the HTTP API\n\n"
      "SYNOPSIS\n"
      "    cloudbrain serve [--config FILE] [--check-config] [--OPTION VALUE]...\n\n"
      "DESCRIPTION\n";
  out += serve_command;
  out += "\nOPTIONS\n";
  out += serve_flags;
  out += config_help();
  for (const std::string& part : {std::string(configuration_file), provider_types(),
                                  environment_section(), std::string(signals)}) {
    out += "\n";
    out += part;
  }
  out += "\nSEE ALSO\n    cloudbrain --help, the whole manual.\n";
  return out;
}

std::string short_usage() {
  constexpr std::string_view heading = "SYNOPSIS\n";
  return "Usage:\n" + std::string(std::string_view(synopsis).substr(heading.size())) +
         "\n`cloudbrain --help` prints the manual.\n";
}

}  // namespace cloudbrain
