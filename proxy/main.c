/*
 * main.c: command line, config loading, and the server's run. No logic of its own.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core.h"
#include "log.h"

#define DEFAULT_CONFIG "conf/authproxy.json"

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: authproxy [-c FILE | --config FILE] [--check] [--version] [--help]\n"
            "       authproxy --explain METHOD URL [-c FILE]\n"
            "       authproxy --healthcheck URL\n"
            "\n"
            "An authenticating forward proxy: legacy clients send plain HTTP (HTTP_PROXY or a\n"
            "base URL); authproxy obtains and caches each API's token, injects it and forwards\n"
            "the request over HTTPS.\n"
            "\n"
            "  -c, --config FILE  config file (default: $AUTHPROXY_CONFIG; else env-only mode\n"
            "                     when AUTHPROXY_UPSTREAM is set; else " DEFAULT_CONFIG ")\n"
            "  --check            validate the config, print what would be served, exit\n"
            "  --explain M URL    show the route, credential and upstream URL for a request\n"
            "                     (no network calls)\n"
            "  --healthcheck URL  GET a loopback admin URL; exit 0 on HTTP 200\n"
            "  --version          print the version\n"
            "  --help             this text\n");
}

static int
explain(const ap_conf_t *conf, const char *method, const char *url)
{
    bool connect = strcmp(method, "CONNECT") == 0;
    ap_target_t t;
    if (ap_http1_parse_target(url, strlen(url), connect, &t) != AP_OK) {
        printf("refused: 400 bad_target: \"%s\" is not a valid request target\n", url);
        return 1;
    }
    char *host = t.host ? ap_xstrndup(t.host, t.host_len) : NULL;
    if (host != NULL)
        ap_ascii_lower(host);
    char *path = ap_http1_target_path(&t);
    const ap_route_conf_t *rt;
    int rc = 0;
    if (t.form == AP_TARGET_ABSOLUTE && t.https) {
        printf("refused: 400 https_needs_connect: send https:// URLs with CONNECT (a tunnel, no "
               "injection) or as http:// so the route upgrades them\n");
        rc = 1;
        goto out;
    }
    if (t.form == AP_TARGET_ORIGIN)
        rt = ap_router_match(conf, NULL, 0, path, strlen(path));
    else
        rt = ap_router_match(conf, host, t.port, connect ? NULL : path, connect ? 0 : strlen(path));
    if (rt == NULL) {
        if (t.form == AP_TARGET_ORIGIN) {
            printf("refused: 400 no_route: no base-URL route matches path %s\n", path);
            rc = 1;
        } else if (conf->unmatched_forward) {
            printf("unmatched: forwarded unchanged (unmatched = \"forward\") to http://%s:%d%s, "
                   "no credential\n",
                   host, t.port, path);
        } else {
            printf("refused: 403 host_not_allowed: no route for host %s (unmatched = "
                   "\"deny\")\n",
                   host);
            rc = 1;
        }
        goto out;
    }
    printf("route:      %s\n", rt->label);
    if (connect) {
        printf("action:     CONNECT tunnel to %s:%d (plain bytes: no credential can be "
               "injected inside TLS)\n",
               host, t.port);
        goto out;
    }
    char *up = ap_router_upstream_url(rt, path, strlen(path));
    printf("upstream:   %s %s\n", method, up);
    free(up);
    if (rt->cred == NULL) {
        printf("credential: none (allowed host, nothing injected)\n");
        goto out;
    }
    printf("credential: %s (provider %s)\n", rt->cred->name, rt->cred->provider);
    const char *hname = rt->cred->inject_header ? rt->cred->inject_header : "Authorization";
    const char *tmpl = rt->cred->inject_value ? rt->cred->inject_value : "{token_type} {token}";
    ap_buf_t v = {0};
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{token}", 7) == 0) {
            ap_buf_append(&v, "<redacted>", 10);
            p += 7;
        } else if (strncmp(p, "{token_type}", 12) == 0) {
            ap_buf_append(&v, "Bearer", 6);
            p += 12;
        } else {
            ap_buf_append(&v, p, 1);
            p++;
        }
    }
    printf("inject:     %s: %s\n", hname, v.data ? v.data : "");
    ap_buf_free(&v, false);
    for (size_t i = 0; i < rt->cred->headers.n; i++)
        printf("header:     %s: %s\n", rt->cred->headers.items[i].name,
               rt->cred->headers.items[i].is_secret ? "(secret)"
                                                    : rt->cred->headers.items[i].value);
out:
    free(host);
    free(path);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *config = NULL;
    const char *explain_method = NULL, *explain_url = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            config = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            config = a + 9;
        } else if (strcmp(a, "--check") == 0) {
            check = true;
        } else if (strcmp(a, "--version") == 0) {
            printf("authproxy %s (%s)\n", AP_VERSION, curl_version());
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--healthcheck") == 0 && i + 1 < argc) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            int rc = ap_admin_healthcheck(argv[i + 1]);
            curl_global_cleanup();
            return rc;
        } else if (strcmp(a, "--explain") == 0 && i + 2 < argc) {
            explain_method = argv[i + 1];
            explain_url = argv[i + 2];
            i += 2;
        } else {
            fprintf(stderr, "authproxy: unknown or incomplete argument \"%s\"\n\n", a);
            usage(stderr);
            return 2;
        }
    }

    /* Secrets in a core dump are secrets on disk. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    char err[16384];
    ap_conf_t *conf = NULL;
    bool env_only = false;
    if (config == NULL) {
        config = getenv("AUTHPROXY_CONFIG");
        if (config != NULL && config[0] == '\0')
            config = NULL; /* set but empty: as if unset (a container can't unset an ENV) */
    }
    /* Explicit beats implicit: AUTHPROXY_UPSTREAM selects env-only mode over the default file. */
    if (config == NULL && getenv("AUTHPROXY_UPSTREAM") != NULL) {
        bool used = false;
        conf = ap_conf_load_env(&used, err, sizeof(err));
        env_only = true;
        if (conf == NULL) {
            fprintf(stderr, "authproxy: environment configuration invalid:\n%s\n", err);
            return 1;
        }
    } else {
        if (config == NULL)
            config = DEFAULT_CONFIG;
        conf = ap_conf_load_file(config, err, sizeof(err));
        if (conf == NULL) {
            fprintf(stderr, "authproxy: %s: configuration invalid:\n%s\n", config, err);
            return 1;
        }
    }
    if (check) {
        printf("configuration %s is valid\n", env_only ? "(environment)" : config);
        ap_conf_dump(conf, stdout);
        ap_conf_unref(conf);
        return 0;
    }
    if (explain_method != NULL) {
        int rc = explain(conf, explain_method, explain_url);
        ap_conf_unref(conf);
        return rc;
    }

    ap_log_level_t lvl;
    if (conf->log_level && ap_log_parse_level(conf->log_level, &lvl) == AP_OK)
        ap_log_set_level(lvl);
    ap_log_set_json(conf->log_json);

    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "authproxy: curl_global_init failed\n");
        return 1;
    }
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    if (!(cv->features & CURL_VERSION_ASYNCHDNS)) {
        /* A synchronous resolver would block the whole loop on every lookup. */
        fprintf(stderr, "authproxy: libcurl lacks an asynchronous resolver; refusing to start\n");
        return 1;
    }
    ap_server_t *s = ap_server_new(conf, env_only ? NULL : config, env_only);
    if (s == NULL) {
        curl_global_cleanup();
        return 1;
    }
    ap_log_info("authproxy %s started: %zu route(s), %zu credential(s)", AP_VERSION,
                s->conf->nroutes, s->conf->ncreds);
    int rc = ap_server_run(s);
    ap_server_free(s);
    curl_global_cleanup();
    ap_log_info("authproxy stopped");
    return rc;
}
