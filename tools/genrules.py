#!/usr/bin/env python3
"""Generates src/detect/rules.toml: rules written from providers' documented token formats.
Examples are synthetic: random fill of each format, seeded for reproducibility."""
import itertools, random, re, zlib, sys, string

rng = random.Random(20261122)
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALPH = {
    'h': '0123456789abcdef', 'H': '0123456789ABCDEF', 'a': string.ascii_letters + string.digits,
    'l': string.ascii_lowercase + string.digits, 'u': string.ascii_uppercase + string.digits,
    'd': string.digits, 'L': string.ascii_letters, 'x': string.ascii_lowercase,
    'b': string.ascii_letters + string.digits + '+/', 'w': string.ascii_letters + string.digits + '_-',
    'z': 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 'B': 'qpzry9x8gf2tvdw0s3jn54khce6mua7l',
    'X': string.ascii_uppercase, 'Z': 'abcdefghijklmnopqrstuvwxyz234567',
}

def rnd(kind, n):
    al = ALPH[kind]
    while True:
        s = ''.join(rng.choice(al) for _ in range(n))
        if kind == 'w' and (s[0] in '_-' or s[-1] in '_-'):
            continue
        # keep generated examples well clear of the placeholder filter
        if re.search(r'(.)\1\1', s) or re.search('(?i)xxx|example|test|fake|dummy', s):
            continue
        return s

def uuid():
    return '-'.join(rnd('h', n) for n in (8, 4, 4, 4, 12))

def fill(t):
    t = t.replace('{U}', '\0U\0')
    t = re.sub(r'\{([a-zA-Z])(\d+)\}', lambda m: rnd(m.group(1), int(m.group(2))), t)
    while '\0U\0' in t:
        t = t.replace('\0U\0', uuid(), 1)
    return t

def placeholder(t):
    t = t.replace('{U}', 'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx')
    return re.sub(r'\{([a-zA-Z])(\d+)\}', lambda m: 'x' * int(m.group(2)) if m.group(1) not in 'Hu zX' else 'X' * int(m.group(2)), t)

def b62(n, width):
    s = ''
    while n:
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s.rjust(width, '0')

def github_token(prefix):
    body = rnd('a', 30)
    return prefix + body + b62(zlib.crc32(body.encode()), 6)

RULES = []
SEEN = set()

def R(id, name, family, conf, regex, keywords, secret, lines=None, validator=None, min_entropy=None,
      counter=None, ci_filter=None, extra_examples=None, literal_secret=False, generic=False, requires=None,
      requires_after_keyword=None, assignment_after_keyword=None):
    assert id not in SEEN, id
    SEEN.add(id)
    if lines is None:
        lines = ['export TOKEN="{S}"', '+ curl -sS -H "Authorization: Bearer {S}" https://api.service.test/v1/me']
    examples = []
    counters = list(counter or [])
    for ln in lines:
        s = secret() if callable(secret) else fill(secret)
        examples.append(fill(ln.replace('{S}', s)) if '{S}' in ln else fill(ln))
    if not callable(secret) and not literal_secret:
        counters.append(lines[0].replace('{S}', placeholder(secret)))
    examples += extra_examples or []
    RULES.append(dict(id=id, name=name, family=family, confidence=conf, regex=regex, keywords=keywords,
                      validator=validator, min_entropy=min_entropy, examples=examples,
                      counter_examples=counters, ci_filter=ci_filter, generic=generic, requires=requires,
                      requires_after_keyword=requires_after_keyword,
                      assignment_after_keyword=assignment_after_keyword))

# ---- helpers -------------------------------------------------------------------------------
END = r'''(?:[^0-9A-Za-z_\-]|$)'''
END_B64 = r'''(?:[^0-9A-Za-z_\-+/=]|$)'''
CTX_PRE = r'''(?i)(?:%s)(?:[0-9a-z_.\-]{0,25})[\s'"\\]{0,3}(?:=|:=|::=|:|=>|\?=|\|\|:|<=|\s)[\s'"=\\\x60]{0,5}'''
CTX_POST = r'''(?:[\s'"\x60;,)\]}&<\\]|$)'''

def ctx(kw, sec):
    return CTX_PRE % kw + '(' + sec + ')' + CTX_POST

# The bytes CTX_PRE's operators begin with; the space: `\s` alone separates name and value.
CTX_ASSIGNMENT = '=:?|< '
NAME_BYTES = frozenset(string.ascii_letters + string.digits + '_.-')

def spellings(pattern, limit=100_000):
    """Every string `pattern` (literals, classes, groups, alternatives and bounded repeats)
    matches, or None where it has other parts, an unbounded repeat, more than `limit`, or
    syntax Python reads otherwise than Rust's regex (`[[:alpha:]]`, `&&`: Python only warns).
    Rust's `(?i)` also folds `K` to the Kelvin sign, no name byte; the names here are ASCII."""
    import warnings
    from re import _parser as parser, _constants as c
    def strings(items):
        out = ['']
        for op, av in items:
            if op == c.LITERAL:
                options = [chr(av)]
            elif op == c.IN:
                options = []
                for o, a in av:
                    if o == c.LITERAL:
                        options.append(chr(a))
                    elif o == c.RANGE:
                        options += [chr(x) for x in range(a[0], a[1] + 1)]
                    else:
                        return None
            elif op == c.SUBPATTERN:
                options = strings(av[-1])
            elif op == c.BRANCH:
                options = []
                for branch in av[1]:
                    b = strings(branch)
                    if b is None or len(options) + len(b) > limit:
                        return None
                    options += b
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[1] != c.MAXREPEAT:
                inner = strings(av[2])
                if inner is None or sum(len(inner) ** n for n in range(av[0], av[1] + 1)) > limit:
                    return None
                options = [''.join(p) for n in range(av[0], av[1] + 1)
                           for p in itertools.product(inner, repeat=n)]
            else:
                return None
            if options is None or len(out) * len(options) > limit:
                return None
            out = [a + b for a in out for b in options]
        return out
    with warnings.catch_warnings():
        warnings.simplefilter('error', FutureWarning)
        try:
            items = parser.parse(pattern)
        except FutureWarning:
            return None
    return strings(items)

def C(id, name, family, kwre, keywords, sec_re, sec_tmpl, varname, conf='medium', **kw):
    """Context rule: provider keyword near an assignment of a value with the documented shape."""
    lines = ['export %s="{S}"' % varname, '  %s: {S}' % varname.lower()]
    counter = ['+ checksum {S}'.replace('{S}', fill(sec_tmpl))] + kw.pop('counter', [])
    # Every name the rule matches must hold a keyword, or the rule never wakes for it.
    # Where every name is spelled in name characters, it runs in them from its keyword to
    # the operator, so a line is tried only where one follows a keyword (the check passes
    # over `[0-9a-z_.\-]*` and then `[\s'"\\]*`, as CTX_PRE does); not for a name with
    # other characters (`sha256~`).
    names = spellings(kwre)
    if names is None:
        sys.exit('%s: cannot list the names %r matches; spell them with literals, classes, '
                 'groups, alternatives and bounded repeats' % (id, kwre))
    for n in names:
        if not any(k.lower() in n.lower() for k in keywords):
            sys.exit('%s: the name %r holds none of its keywords %r' % (id, n, keywords))
    if all(set(n) <= NAME_BYTES for n in names):
        kw.setdefault('assignment_after_keyword', CTX_ASSIGNMENT)
    R(id, name, family, conf, ctx(kwre, sec_re), keywords, sec_tmpl, lines=lines, counter=counter, **kw)

def P(id, name, family, regex, keywords, tmpl, conf='high', **kw):
    R(id, name, family, conf, regex, keywords, tmpl, **kw)

HEX32 = '[a-f0-9]{32}'
UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'

# ---- GitHub (github.blog 2021-04-05 token format; fine-grained PATs 2022) -----------------
for pfx, nm in [('ghp', 'personal access token (classic)'), ('gho', 'OAuth access token'),
                ('ghu', 'user-to-server token'), ('ghs', 'server-to-server (app installation) token'),
                ('ghr', 'refresh token')]:
    R('github-' + {'ghp': 'pat', 'gho': 'oauth', 'ghu': 'user-to-server', 'ghs': 'app-installation', 'ghr': 'refresh'}[pfx],
      'GitHub ' + nm, 'github', 'high', r'\b(%s_[0-9A-Za-z]{36,251})\b' % pfx, [pfx + '_'],
      (lambda p=pfx: github_token(p + '_')), validator='github_crc32',
      counter=['export GITHUB_TOKEN=%s_%s' % (pfx, 'x' * 36), 'see %s_abc for details' % pfx])
R('github-fine-grained-pat', 'GitHub fine-grained personal access token', 'github', 'high',
  r'\b(github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59})\b', ['github_pat_'], 'github_pat_{a22}_{a59}')
P('github-app-private-key-id-legacy-token', 'GitHub legacy installation token (v1.)', 'github',
  r'''(?i)(?:x-access-token|installation[_-]?token|github[_-]?token)[^\n]{0,20}?\b(v1\.[0-9a-f]{40})\b''',
  ['x-access-token', 'installation_token', 'installation-token', 'github_token', 'github-token'], 'v1.{h40}', conf='medium',
  lines=['git clone https://x-access-token:{S}@github.com/acme/app.git', 'GITHUB_TOKEN=v1.{h40}'.replace('v1.{h40}', '{S}')], requires=['v1.'])

# ---- GitLab (docs.gitlab.com/security/tokens "Token prefixes") ------------------------------
GL = [('glpat-', 'personal/project/group access token', r'glpat-[0-9A-Za-z_\-]{20,}(?:(?:\.[0-9a-z]{2})?\.[0-9a-z]{9})?', 'glpat-{a20}'),
      ('gloas-', 'OAuth application secret', r'gloas-[0-9a-f]{64}', 'gloas-{h64}'),
      ('gldt-', 'deploy token', r'gldt-[0-9A-Za-z_\-]{20,}', 'gldt-{a20}'),
      ('glrt-', 'runner authentication token', r'glrt-(?:t\d_)?[0-9A-Za-z_\-]{20,}(?:(?:\.[0-9a-z]{2})?\.[0-9a-z]{9})?', 'glrt-{a20}'),
      ('glcbt-', 'CI/CD job token', r'glcbt-(?:[0-9a-fA-F]{1,5}_)?[0-9A-Za-z_\-]{20,}', 'glcbt-64_{a20}'),
      ('glptt-', 'pipeline trigger token', r'glptt-[0-9a-f]{40}', 'glptt-{h40}'),
      ('glft-', 'feed token', r'glft-[0-9A-Za-z_\-]{20,}', 'glft-{a20}'),
      ('glimt-', 'incoming mail token', r'glimt-[0-9A-Za-z_\-]{25}', 'glimt-{a25}'),
      ('glagent-', 'agent for Kubernetes token', r'glagent-[0-9A-Za-z_\-]{50}', 'glagent-{a50}'),
      ('glsoat-', 'SCIM OAuth access token', r'glsoat-[0-9A-Za-z_\-]{20,}', 'glsoat-{a20}'),
      ('glffct-', 'feature flags client token', r'glffct-[0-9A-Za-z_\-]{20,}', 'glffct-{a20}'),
      ('glwt-', 'workspace token', r'glwt-[0-9A-Za-z_\-]{20,}', 'glwt-{a20}'),
      ('gltst-', 'trusted service token', r'gltst-[0-9A-Za-z_\-]{20,}', 'gltst-{a20}'),
      ('glsa-', 'service account/secret token', r'glsa-[0-9A-Za-z_\-]{20,}', 'glsa-{a20}'),
      ]
for pfx, nm, rx, tm in GL:
    R('gitlab-' + pfx.strip('-'), 'GitLab ' + nm, 'gitlab', 'high', r'\b(' + rx + ')' + END, [pfx], tm)
P('gitlab-runner-registration-legacy', 'GitLab runner registration token (legacy GR1348941)', 'gitlab',
  r'\b(GR1348941[0-9A-Za-z_\-]{20})' + END, ['GR1348941'], 'GR1348941{a20}')
P('gitlab-session-cookie', 'GitLab session cookie', 'gitlab', r'_gitlab_session=([0-9a-z]{32})\b', ['_gitlab_session='],
  '{l32}', lines=['Cookie: _gitlab_session={S}; path=/', 'curl -b "_gitlab_session={S}" https://gitlab.test'])
C('gitlab-private-token-header', 'GitLab PRIVATE-TOKEN header', 'gitlab', 'private[_-]token', ['private-token', 'private_token'],
  r'[0-9A-Za-z_\-]{20}', '{a20}', 'PRIVATE_TOKEN')

# ---- Atlassian / Bitbucket ------------------------------------------------------------------
P('atlassian-api-token', 'Atlassian API token', 'atlassian', r'\b(ATATT3[A-Za-z0-9_\-=]{150,250})' + END_B64, ['ATATT3'], 'ATATT3{w180}={H8}')
C('atlassian-api-token-legacy', 'Atlassian legacy API token', 'atlassian', 'atlassian|confluence|jira', ['atlassian', 'confluence', 'jira'],
  '[a-z0-9]{24}', '{l24}', 'JIRA_API_TOKEN')
P('bitbucket-app-password', 'Bitbucket app password / API token', 'bitbucket', r'\b(ATBB[A-Za-z0-9_=.\-]{32,})' + END, ['ATBB'], 'ATBB{a32}')
C('bitbucket-client-secret', 'Bitbucket OAuth client secret', 'bitbucket', 'bitbucket', ['bitbucket'], r'[a-z0-9=_\-]{64}', '{l64}', 'BITBUCKET_CLIENT_SECRET')
C('bitbucket-client-id', 'Bitbucket OAuth client id', 'bitbucket', 'bitbucket', ['bitbucket'], r'[a-z0-9]{32}', '{l32}', 'BITBUCKET_CLIENT_ID', conf='low')

# ---- AWS ------------------------------------------------------------------------------------
P('aws-access-key-id', 'AWS access key id', 'aws', r'\b((?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16})\b',
  ['AKIA', 'ASIA', 'ABIA', 'ACCA'] + ['A3T' + c for c in string.ascii_uppercase + string.digits], 'AKIA{z16}', conf='medium')
R('aws-secret-access-key', 'AWS secret access key', 'aws', 'high',
  r'''(?i)(?:aws|amazon|s3)[0-9a-z_.\-]{0,30}(?:secret|private|sk)[0-9a-z_.\-]{0,20}[\s'"\\]{0,3}(?:=|:=|:|=>|,|\s)[\s'"\\=]{0,5}([A-Za-z0-9/+]{40})''' + END_B64,
  ['aws_', 'aws-', 'aws.', 'aws ', 'amazon'], '{b40}', lines=['export AWS_SECRET_ACCESS_KEY={S}', 'aws_secret_access_key = {S}'], min_entropy=4.0,
  counter=['aws_secret_access_key: <your-aws-secret-key-goes-here-please-x>'])
R('aws-credential-pair', 'AWS access key id with secret access key', 'aws', 'high',
  r'''\b(?:AKIA|ASIA)[A-Z2-7]{16}\b[^A-Za-z0-9/+]{1,40}([A-Za-z0-9/+]{40})''' + END_B64, ['AKIA', 'ASIA'], 'AKIA{z16} {b40}',
  lines=['+ aws configure set creds {S}', 'keys: {S}'], min_entropy=4.0)
R('aws-session-token', 'AWS session token', 'aws', 'high',
  r'''(?i)(?:aws|amz)[_.\-]?(?:session|security)[_.\-]?token[\s'"\\]{0,3}(?:=|:|=>|\s)[\s'"\\]{0,5}([A-Za-z0-9/+=._\-]{100,})''',
  # Every match holds one of these. Not 'session' alone: pytest's "test session starts" header
  # woke this rule on every job that runs pytest.
  ['sessiontoken', 'session_token', 'session-token', 'session.token', 'securitytoken', 'security_token', 'security-token', 'security.token'],
  'IQoJb3JpZ2luX2Vj{b200}', lines=['export AWS_SESSION_TOKEN={S}', 'x-amz-security-token: {S}'])
P('aws-mws-key', 'Amazon MWS auth token', 'aws', r'\b(amzn\.mws\.' + UUID + r')\b', ['amzn.mws.'], 'amzn.mws.{U}')
P('aws-bedrock-api-key', 'Amazon Bedrock API key', 'aws', r'\b(ABSK[A-Za-z0-9+/]{109,269}={0,2})' + END_B64, ['ABSK'], 'ABSK{b120}')

# ---- Google Cloud / Firebase ----------------------------------------------------------------
P('gcp-api-key', 'Google API key', 'google', r'\b(AIza[0-9A-Za-z_\-]{35})' + END, ['AIza'], 'AIza{a35}')
R('gcp-service-account-private-key', 'GCP service account private key (JSON)', 'google', 'high',
  r'''"private_key"\s*:\s*"(-----BEGIN[A-Z ]{0,20}PRIVATE KEY-----[A-Za-z0-9+/=\\\s]{16,}(?:-----END[A-Z ]{0,20}PRIVATE KEY-----(?:\\n)?)?)"?''',
  ['private_key'], '-----BEGIN PRIVATE KEY-----\\\\n{b64}\\\\n{b64}\\\\n-----END PRIVATE KEY-----\\\\n',
  lines=['  "private_key": "{S}",', '{"type":"service_account","private_key":"{S}","client_email":"ci@proj.iam.gserviceaccount.com"}'])
P('gcp-oauth-client-secret', 'Google OAuth client secret', 'google', r'\b(GOCSPX-[0-9A-Za-z_\-]{28})' + END, ['GOCSPX-'], 'GOCSPX-{a28}')
P('google-oauth-access-token', 'Google OAuth access token', 'google', r'\b(ya29\.[0-9A-Za-z_\-]{30,})' + END, ['ya29.'], 'ya29.{w120}', conf='medium')
P('google-oauth-refresh-token', 'Google OAuth refresh token', 'google', r'''(?:^|[^0-9A-Za-z_\-])(1//0[0-9A-Za-z_\-]{40,})''' + END, ['1//0'], '1//0{w90}', conf='medium')
P('firebase-cloud-messaging-key', 'Firebase Cloud Messaging server key', 'google', r'\b(AAAA[A-Za-z0-9_\-]{7}:APA91b[A-Za-z0-9_\-]{134})' + END, ['APA91b'], 'AAAA{a7}:APA91b{a134}')
R('google-chat-webhook', 'Google Chat webhook', 'google', 'high',
  r'chat\.googleapis\.com/v1/spaces/[A-Za-z0-9_\-]+/messages\?key=[A-Za-z0-9_\-]+&token=([A-Za-z0-9_\-=%]{40,})',
  ['chat.googleapis.com'], 'https://chat.googleapis.com/v1/spaces/AAAA{a7}/messages?key=AIza{a35}&token={w43}',
  lines=['curl -X POST "{S}" -d @msg.json', 'WEBHOOK={S}'])

# ---- Azure / Microsoft ----------------------------------------------------------------------
P('azure-storage-account-key', 'Azure storage account key', 'azure', r'''(?i)AccountKey\s*=\s*([A-Za-z0-9+/]{86}==)''', ['accountkey'],
  '{b86}==', lines=['DefaultEndpointsProtocol=https;AccountName=ciartifacts;AccountKey={S};EndpointSuffix=core.windows.net', 'AZURE_STORAGE_CONNECTION_STRING="AccountName=x;AccountKey={S}"'])
# every name the regex accepts holds a keyword, as `assignment_after_keyword` needs
C('azure-storage-key-context', 'Azure storage account key (context)', 'azure', 'azure|storage|account[_-]?key|az_', ['azure', 'storage', 'account_key', 'account-key', 'accountkey', 'az_'],
  '[A-Za-z0-9+/]{86}==', '{b86}==', 'AZURE_STORAGE_KEY', conf='high', requires=['=='])
P('azure-shared-access-key', 'Azure Service Bus / Event Hubs / IoT SharedAccessKey', 'azure', r'''(?i)SharedAccessKey\s*=\s*([A-Za-z0-9+/]{43}=)''', ['sharedaccesskey'],
  '{b43}=', lines=['Endpoint=sb://ci-bus.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={S}', 'conn="SharedAccessKey={S};EntityPath=q"'])
P('azure-sas-token', 'Azure shared access signature', 'azure', r'''[?&]sig=([A-Za-z0-9%/+]{40,100}(?:%3D|=){0,2})''', ['sig='],
  '{a43}%3D', conf='medium', lines=['https://acct.blob.core.windows.net/c/f.tgz?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00:00:00Z&sig={S}', 'SAS="?sv=2021-06-08&sr=c&sig={S}"'])
P('azure-ad-client-secret', 'Azure AD (Entra) client secret', 'azure',
  r'''(?:^|[\\'"\x60\s>=:(,])([a-zA-Z0-9_~.]{3}\dQ~[a-zA-Z0-9_~.\-]{31,34})(?:$|[\\'"\x60\s<),])''', [d + 'Q~' for d in '0123456789'], '{a3}8Q~{a34}', lines=['export AZURE_CLIENT_SECRET="{S}"', 'az login --service-principal -u app --password={S} --tenant t'])
P('azure-devops-pat', 'Azure DevOps personal access token (84-char)', 'azure', r'\b([0-9A-Za-z]{52}JQQJ9[0-9A-Za-z]{19}AZDO[0-9A-Za-z]{4})\b', ['AZDO'], '{a52}JQQJ9{a19}AZDO{a4}')
C('azure-devops-pat-legacy', 'Azure DevOps personal access token (52-char)', 'azure', r'azure|ado[_.\-]|devops|vsts|system_accesstoken', ['azure', 'ado_', 'ado-', 'ado.', 'devops', 'vsts', 'system_accesstoken'],
  '[a-z2-7]{52}', '{Z52}', 'AZURE_DEVOPS_EXT_PAT')
P('microsoft-identifiable-key', 'Microsoft common annotated security key', 'azure', r'\b([0-9A-Za-z]{52}JQQJ9[0-9A-Za-z]{4}[A-Za-z0-9]{23})\b', ['JQQJ9'],
  '{a52}JQQJ9{a27}', conf='medium')
R('azure-connection-string-password', 'Azure SQL / ADO.NET connection string password', 'azure', 'high',
  r'''(?i)(?:server|data source|host|endpoint)\s*=[^;]{1,200};.{0,300}?(?:password|pwd)\s*=\s*([^;'"\s]{3,128})''', ['password=', 'pwd='],
  'Pw{a14}', lines=['ConnectionStrings__Db="Server=tcp:ci.database.windows.net,1433;Database=app;User ID=ci;Password={S};Encrypt=true"', 'DSN: Data Source=db01;Initial Catalog=app;User Id=sa;Pwd={S};'], generic=True)
P('microsoft-teams-webhook', 'Microsoft Teams incoming webhook', 'msteams',
  r'''(https://(?:[a-z0-9\-]+\.webhook\.office\.com/webhookb2|outlook\.office(?:365)?\.com/webhook)/[a-z0-9\-]{36}@[a-z0-9\-]{36}/IncomingWebhook/[a-z0-9]{32}/[a-z0-9\-]{36}(?:/[A-Za-z0-9_\-]+)?)''',
  ['webhook.office.com', 'outlook.office.com/webhook', 'outlook.office365.com/webhook'], 'https://acme.webhook.office.com/webhookb2/{U}@{U}/IncomingWebhook/{h32}/{U}')

# ---- Slack ----------------------------------------------------------------------------------
P('slack-bot-token', 'Slack bot token', 'slack', r'\b(xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24,34})\b', ['xoxb-'], 'xoxb-{d12}-{d13}-{a24}')
P('slack-user-token', 'Slack user token', 'slack', r'\b(xox[pe](?:-[0-9]{10,13}){3}-[A-Za-z0-9\-]{28,34})' + END, ['xoxp-', 'xoxe-'], 'xoxp-{d12}-{d12}-{d13}-{h32}')
P('slack-app-token', 'Slack app-level token', 'slack', r'(?i)\b(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)\b', ['xapp-'], 'xapp-1-A{u10}-{d13}-{h64}')
P('slack-config-access-token', 'Slack configuration access token', 'slack', r'(?i)\b(xoxe\.xox[bp]-\d-[A-Z0-9]{163,166})\b', ['xoxe.xox'], 'xoxe.xoxp-1-{u164}')
P('slack-config-refresh-token', 'Slack configuration refresh token', 'slack', r'(?i)\b(xoxe-\d-[A-Z0-9]{146})\b', ['xoxe-'], 'xoxe-1-{u146}')
P('slack-legacy-token', 'Slack legacy token', 'slack', r'\b(xox[os]-\d+-\d+-\d+-[a-fA-F\d]+)\b', ['xoxo-', 'xoxs-'], 'xoxs-{d10}-{d10}-{d12}-{h64}')
P('slack-legacy-bot-token', 'Slack legacy bot token', 'slack', r'\b(xoxb-[0-9]{8,14}-[A-Za-z0-9]{18,26})\b', ['xoxb-'], 'xoxb-{d12}-{a24}')
P('slack-legacy-workspace-token', 'Slack legacy workspace token', 'slack', r'\b(xox[ar]-(?:\d-)?[0-9a-zA-Z]{8,48})\b', ['xoxa-', 'xoxr-'], 'xoxa-2-{a40}', conf='medium')
P('slack-webhook', 'Slack incoming webhook / workflow trigger', 'slack',
  r'''((?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56})''', ['hooks.slack.com'],
  'https://hooks.slack.com/services/T{u8}/B{u8}/{a24}')

# ---- Payments -------------------------------------------------------------------------------
P('stripe-secret-key', 'Stripe secret / restricted key', 'stripe', r'\b((?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{10,247})\b', ['sk_live_', 'sk_test_', 'rk_live_', 'rk_test_', 'sk_prod_', 'rk_prod_'], 'sk_live_{a99}')
P('stripe-webhook-secret', 'Stripe webhook signing secret', 'stripe', r'\b(whsec_[A-Za-z0-9]{32,})\b', ['whsec_'], 'whsec_{a32}')
P('square-access-token', 'Square access token', 'square', r'\b((?:EAAA|sq0atp-)[0-9A-Za-z_\-]{22,60})' + END, ['EAAA', 'sq0atp-'], 'EAAA{a60}')
P('square-oauth-secret', 'Square OAuth secret', 'square', r'\b(sq0csp-[0-9A-Za-z_\-]{43})' + END, ['sq0csp-'], 'sq0csp-{a43}')
P('braintree-access-token', 'PayPal Braintree access token', 'paypal', r'\b(access_token\$(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32})\b', ['access_token$'], 'access_token$production${l16}${h32}')
C('paypal-client-secret', 'PayPal client secret', 'paypal', 'paypal', ['paypal'], r'E[A-Za-z0-9_\-]{79}', 'E{a79}', 'PAYPAL_CLIENT_SECRET', conf='high')
P('adyen-api-key', 'Adyen API key', 'adyen', r'\b(AQE[a-zA-Z0-9]{3}[A-Za-z0-9_\-+/=]{60,300})' + END_B64, ['adyen'], 'AQE{a80}', conf='low', min_entropy=4.0, lines=['export ADYEN_API_KEY="{S}"', 'adyen: x-api-key {S}'])
P('razorpay-key', 'Razorpay key id', 'razorpay', r'\b(rzp_(?:live|test)_[A-Za-z0-9]{14})\b', ['rzp_live_', 'rzp_test_'], 'rzp_live_{a14}', conf='medium')
P('paystack-secret-key', 'Paystack secret key', 'paystack', r'\b(sk_(?:live|test)_[a-f0-9]{40})\b', ['sk_live_', 'sk_test_'], 'sk_live_{h40}')
P('flutterwave-secret-key', 'Flutterwave secret / public key', 'flutterwave', r'\b(FLW(?:SECK|PUBK)(?:_TEST)?-[a-h0-9]{32}-X)\b', ['FLWSECK', 'FLWPUBK'], 'FLWSECK_TEST-{h32}-X')
P('flutterwave-encryption-key', 'Flutterwave encryption key', 'flutterwave', r'\b(FLWSECK_TEST[a-h0-9]{12})\b', ['FLWSECK_TEST'], 'FLWSECK_TEST{h12}')
P('gocardless-token', 'GoCardless access token', 'gocardless', r'\b((?:live|sandbox)_[A-Za-z0-9\-_=]{40})' + END_B64, ['live_', 'sandbox_'], 'live_{a40}', conf='medium')
P('shopify-token', 'Shopify access / custom app / private app token', 'shopify', r'\b((?:shpat|shpca|shppa|shpss)_[a-fA-F0-9]{32})\b', ['shpat_', 'shpca_', 'shppa_', 'shpss_'], 'shpat_{h32}')
P('coinbase-cdp-key', 'Coinbase CDP API key name', 'coinbase', r'(organizations/[0-9a-f\-]{36}/apiKeys/[0-9a-f\-]{36})', ['/apikeys/'], 'organizations/{U}/apiKeys/{U}', conf='low')
C('coinbase-access-token', 'Coinbase access token', 'coinbase', 'coinbase', ['coinbase'], r'[a-z0-9_\-]{64}', '{l64}', 'COINBASE_ACCESS_TOKEN')
C('kraken-access-token', 'Kraken access token', 'kraken', 'kraken', ['kraken'], r'[a-z0-9/=_+\-]{80,90}', '{a88}', 'KRAKEN_API_SECRET')
C('kucoin-access-token', 'KuCoin access token', 'kucoin', 'kucoin', ['kucoin'], r'[a-f0-9]{24}', '{h24}', 'KUCOIN_API_KEY')
C('kucoin-secret-key', 'KuCoin secret key', 'kucoin', 'kucoin', ['kucoin'], UUID, '{U}', 'KUCOIN_SECRET', ci_filter=False)
C('bittrex-key', 'Bittrex API key / secret', 'bittrex', 'bittrex', ['bittrex'], r'[a-z0-9]{32}', '{l32}', 'BITTREX_SECRET')
C('binance-api-key', 'Binance API key / secret', 'binance', 'binance', ['binance'], r'[A-Za-z0-9]{64}', '{a64}', 'BINANCE_API_SECRET')
P('plaid-access-token', 'Plaid access token', 'plaid', r'\b(access-(?:sandbox|development|production)-' + UUID + r')\b', ['access-sandbox-', 'access-development-', 'access-production-'], 'access-production-{U}')
C('plaid-secret', 'Plaid secret / client id', 'plaid', 'plaid', ['plaid'], r'[a-z0-9]{24,30}', '{l30}', 'PLAID_SECRET')
C('finicity-secret', 'Finicity API token / client secret', 'finicity', 'finicity', ['finicity'], r'[a-z0-9]{20}|[a-f0-9]{32}', '{l20}', 'FINICITY_CLIENT_SECRET')
C('mollie-api-key', 'Mollie API key', 'mollie', 'mollie', ['mollie'], r'(?:live|test)_[A-Za-z0-9]{30}', 'live_{a30}', 'MOLLIE_API_KEY')
P('woocommerce-secret', 'WooCommerce consumer secret', 'woocommerce', r'\b(cs_[a-f0-9]{40})\b', ['woocommerce', 'consumer_secret', 'consumer-secret', 'consumersecret'], 'cs_{h40}', conf='medium', lines=['WOOCOMMERCE_CONSUMER_SECRET={S}', 'woocommerce consumer_secret={S}'])

# ---- Communications -------------------------------------------------------------------------
P('twilio-api-key', 'Twilio API key SID', 'twilio', r'\b(SK[0-9a-fA-F]{32})\b', ['twilio'], 'SK{h32}', conf='medium',
  lines=['export TWILIO_API_KEY={S}', 'twilio api:core:messages:list --api-key {S}'])
C('twilio-auth-token', 'Twilio auth token', 'twilio', 'twilio', ['twilio'], HEX32, '{h32}', 'TWILIO_AUTH_TOKEN', conf='high')
P('sendgrid-api-key', 'SendGrid API key', 'sendgrid', r'\b(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})' + END, ['SG.' + c for c in string.ascii_lowercase + string.digits + '_-'], 'SG.{a22}.{a43}')
P('mailgun-private-key', 'Mailgun private API key', 'mailgun', r'\b(key-[0-9a-f]{32})\b', ['key-'], 'key-{h32}')
P('mailgun-public-key', 'Mailgun public validation key', 'mailgun', r'\b(pubkey-[0-9a-f]{32})\b', ['pubkey-'], 'pubkey-{h32}', conf='medium')
C('mailgun-signing-key', 'Mailgun webhook signing key', 'mailgun', 'mailgun', ['mailgun'], r'[a-h0-9]{32}-[a-h0-9]{8}-[a-h0-9]{8}', '{h32}-{h8}-{h8}', 'MAILGUN_SIGNING_KEY', conf='high')
P('mailchimp-api-key', 'Mailchimp API key', 'mailchimp', r'\b([0-9a-f]{32}-us[0-9]{1,2})\b', ['-us' + d for d in '0123456789'], '{h32}-us14')
P('mandrill-api-key', 'Mandrill (Mailchimp transactional) key', 'mailchimp', r'\b(md-[A-Za-z0-9_\-]{22})' + END, ['mandrill'], 'md-{a22}', conf='medium', lines=['MANDRILL_KEY={S}', 'mandrill: {S}'])
P('sendinblue-api-key', 'Brevo (Sendinblue) API / SMTP key', 'sendinblue', r'\b(x(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16})\b', ['xkeysib-', 'xsmtpsib-'], 'xkeysib-{h64}-{a16}')
C('postmark-server-token', 'Postmark server token', 'postmark', 'postmark', ['postmark'], UUID, '{U}', 'POSTMARK_SERVER_TOKEN', ci_filter=False)
C('mailjet-key', 'Mailjet API key / secret', 'mailjet', 'mailjet|mj_apikey', ['mailjet', 'mj_apikey'], HEX32, '{h32}', 'MAILJET_API_SECRET')
P('resend-api-key', 'Resend API key', 'resend', r'\b(re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24})\b', ['resend'], 're_{a8}_{a24}', lines=['RESEND_API_KEY={S}', 'resend --api-key {S}'])
P('mailersend-token', 'MailerSend API token', 'mailersend', r'\b(mlsn\.[a-f0-9]{64})\b', ['mlsn.'], 'mlsn.{h64}')
C('messagebird-key', 'MessageBird API key', 'messagebird', 'message[_-]?bird', ['messagebird', 'message_bird', 'message-bird'], r'[a-z0-9]{25}', '{l25}', 'MESSAGEBIRD_API_KEY')
C('vonage-secret', 'Vonage / Nexmo API secret', 'vonage', 'vonage|nexmo', ['vonage', 'nexmo'], r'[A-Za-z0-9]{16}', '{a16}', 'NEXMO_API_SECRET')
C('plivo-auth-token', 'Plivo auth token', 'plivo', 'plivo', ['plivo'], r'[A-Za-z0-9]{40}', '{a40}', 'PLIVO_AUTH_TOKEN')
P('telnyx-api-key', 'Telnyx API key', 'telnyx', r'\b(KEY[0-9A-F]{32}_[A-Za-z0-9]{22})\b', ['KEY' + c for c in '0123456789ABCDEF'], 'KEY{H32}_{a22}')
R('telegram-bot-token', 'Telegram bot token', 'telegram', 'high',
  r'''(?i)(?:telegram|tgram|tg_|bot_?token|api\.telegram\.org/bot)[^\n]{0,40}?([0-9]{5,16}:A[A-Za-z0-9_\-]{34})''' + END,
  ['telegram', 'tgram', 'bot_token', 'bottoken', 'api.telegram.org'], '{d10}:AA{a33}',
  lines=['export TELEGRAM_BOT_TOKEN={S}', 'curl https://api.telegram.org/bot{S}/sendMessage'])
P('discord-bot-token', 'Discord bot token', 'discord', r'\b([MNO][A-Za-z\d_\-]{23,25}\.[A-Za-z\d_\-]{6}\.[A-Za-z\d_\-]{27,38})' + END, ['discord', 'bot '], 'M{a25}.{a6}.{a38}',
  lines=['DISCORD_TOKEN={S}', 'discord: Authorization: Bot {S}'])
P('discord-webhook', 'Discord webhook', 'discord', r'''discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/([A-Za-z0-9_\-]{60,68})''', ['discord.com/api/webhooks', 'discordapp.com/api/webhooks'],
  'https://discord.com/api/webhooks/{d18}/{a68}')
C('discord-client-secret', 'Discord client secret / API key', 'discord', 'discord', ['discord'], r'[a-z0-9=_\-]{32}|[a-f0-9]{64}', '{h64}', 'DISCORD_CLIENT_SECRET')
C('mattermost-token', 'Mattermost access token', 'mattermost', 'mattermost', ['mattermost'], r'[a-z0-9]{26}', '{l26}', 'MATTERMOST_TOKEN')
C('gitter-token', 'Gitter access token', 'gitter', 'gitter', ['gitter'], r'[a-z0-9_\-]{40}', '{l40}', 'GITTER_TOKEN')
C('rocketchat-token', 'Rocket.Chat personal access token', 'rocketchat', 'rocket[_.-]?chat|x-auth-token', ['rocketchat', 'rocket_chat', 'rocket.chat', 'rocket-chat', 'x-auth-token'], r'[A-Za-z0-9_\-]{43}', '{a43}', 'ROCKETCHAT_AUTH_TOKEN')
C('line-channel-token', 'LINE channel access token / secret', 'line', 'line[_-]?channel', ['line_channel', 'linechannel', 'line-channel'], r'[A-Za-z0-9+/=]{32,172}', '{a172}', 'LINE_CHANNEL_ACCESS_TOKEN')
C('zulip-api-key', 'Zulip API key', 'zulip', 'zulip', ['zulip'], r'[A-Za-z0-9]{32}', '{a32}', 'ZULIP_API_KEY')
C('intercom-token', 'Intercom access token', 'intercom', 'intercom', ['intercom'], r'[a-z0-9=_\-]{60}', '{a60}', 'INTERCOM_ACCESS_TOKEN')
P('zapier-webhook', 'Zapier catch hook', 'zapier', r'''hooks\.zapier\.com/hooks/catch/([0-9]+/[a-z0-9]+)/?''', ['hooks.zapier.com'], 'https://hooks.zapier.com/hooks/catch/{d7}/{l7}/', conf='medium')

# ---- Package registries / build ------------------------------------------------------------
P('npm-access-token', 'npm access token', 'npm', r'\b(npm_[A-Za-z0-9]{36})\b', ['npm_'], 'npm_{a36}')
R('npmrc-auth-token', 'npm registry _authToken', 'npm', 'high', r'''(?i)_auth(?:Token)?\s*=\s*["']?([A-Za-z0-9_\-+/=.]{20,})''', ['_authtoken', '_auth'],
  '{U}', lines=['//registry.npmjs.org/:_authToken={S}', 'echo "//npm.pkg.github.com/:_authToken={S}" >> ~/.npmrc'], ci_filter=False, requires_after_keyword=['='])
P('pypi-token', 'PyPI upload token', 'pypi', r'\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})' + END, ['pypi-AgEIcHlwaS5vcmc'], 'pypi-AgEIcHlwaS5vcmc{w70}')
P('pypi-test-token', 'TestPyPI upload token', 'pypi', r'\b(pypi-AgENdGVzdC5weXBpLm9yZw[A-Za-z0-9_\-]{50,})' + END, ['pypi-AgENdGVzdC5weXBpLm9yZw'], 'pypi-AgENdGVzdC5weXBpLm9yZw{w70}')
P('rubygems-api-key', 'RubyGems API key', 'rubygems', r'\b(rubygems_[a-f0-9]{48})\b', ['rubygems_'], 'rubygems_{h48}')
P('nuget-api-key', 'NuGet API key', 'nuget', r'\b(oy2[a-z0-9]{43})\b', ['oy2' + c for c in string.ascii_lowercase + string.digits], 'oy2{l43}')
P('cratesio-token', 'crates.io API token', 'crates.io', r'\b(cio[a-zA-Z0-9]{32})\b', ['cio' + c for c in string.ascii_lowercase + string.digits], 'cio{a32}', conf='medium', lines=['CARGO_REGISTRY_TOKEN={S}', 'cargo login {S}'])
P('clojars-token', 'Clojars deploy token', 'clojars', r'(?i)\b(CLOJARS_[a-z0-9]{60})\b', ['clojars_'], 'CLOJARS_{l60}')
P('dockerhub-pat', 'Docker Hub personal access token', 'dockerhub', r'\b(dckr_pat_[A-Za-z0-9_\-]{27,})' + END, ['dckr_pat_'], 'dckr_pat_{a27}')
P('dockerhub-oat', 'Docker Hub organization access token', 'dockerhub', r'\b(dckr_oat_[A-Za-z0-9_\-]{32,})' + END, ['dckr_oat_'], 'dckr_oat_{a32}')
R('docker-config-auth', 'Docker config.json auth (base64 user:password)', 'docker', 'high', r'''"auth"\s*:\s*"([A-Za-z0-9+/]{8,}={0,2})"''', ['"auth"'],
  lambda: __import__('base64').b64encode(('ci-bot:' + rnd('a', 20)).encode()).decode(), lines=['{"auths":{"ghcr.io":{"auth":"{S}"}}}', '  "auth": "{S}"'],
  validator='basic_auth_b64', counter=['  "auth": "bm90LWEtY3JlZGVudGlhbA=="'])
P('jfrog-api-key', 'JFrog Artifactory API key', 'jfrog', r'\b(AKCp[A-Za-z0-9]{69})\b', ['AKCp'], 'AKCp{a69}')
P('jfrog-reference-token', 'JFrog reference token', 'jfrog', r'\b(cmVmdGtuOjAxOj[A-Za-z0-9]{40,})\b', ['cmVmdGtuOjAxOj'], 'cmVmdGtuOjAxOj{a50}')
C('jfrog-identity-token', 'JFrog / Artifactory token (context)', 'artifactory', 'jfrog|artifactory|bintray|xray', ['jfrog', 'artifactory', 'bintray', 'xray'], r'[a-z0-9]{73}|[a-z0-9]{64}', '{l64}', 'ARTIFACTORY_API_KEY')
C('sonatype-nexus-password', 'Sonatype / OSSRH token', 'sonatype', 'ossrh|sonatype|nexus', ['ossrh', 'sonatype', 'nexus'], r'[A-Za-z0-9+/=]{20,80}', '{a44}', 'OSSRH_TOKEN', min_entropy=3.5)
C('gradle-publish-key', 'Gradle plugin portal publish key/secret', 'gradle', r'gradle\.publish\.(?:key|secret)', ['gradle.publish'], r'[a-z0-9]{32}', '{l32}', 'gradle.publish.secret')
# keywords match in any case, the regex only `API-`: `requires` turns away the lines of
# `slf4j-api-2.0.9.pom` and `fastapi-0.110.0` before the regex, which cannot be anchored
P('octopus-api-key', 'Octopus Deploy API key', 'octopus', r'(?:^|[^A-Za-z0-9_.\-/])(API-[A-Z0-9]{26,32})\b', ['API-'], 'API-{u28}', conf='medium',
  requires=['API-'])
P('circleci-token', 'CircleCI personal / project token', 'circleci', r'\b(CCIP(?:AT|RJ)_[A-Za-z0-9]{22}_[a-f0-9]{40})\b', ['CCIPAT_', 'CCIPRJ_'], 'CCIPAT_{a22}_{h40}')
C('circleci-token-legacy', 'CircleCI token (legacy, context)', 'circleci', 'circle[_-]?(?:ci)?[_-]?token', ['circle'], r'[a-f0-9]{40}', '{h40}', 'CIRCLE_TOKEN')
P('buildkite-token', 'Buildkite API access token', 'buildkite', r'\b(bkua_[a-f0-9]{40})\b', ['bkua_'], 'bkua_{h40}')
C('buildkite-agent-token', 'Buildkite agent token', 'buildkite', 'buildkite[_-]?agent', ['buildkite'], r'[a-z0-9]{50}', '{l50}', 'BUILDKITE_AGENT_TOKEN')
C('travisci-token', 'Travis CI access token', 'travisci', 'travis', ['travis'], r'[a-z0-9]{22}', '{l22}', 'TRAVIS_API_TOKEN')
C('droneci-token', 'Drone CI access token', 'droneci', 'drone', ['drone'], r'[a-z0-9]{32}', '{l32}', 'DRONE_TOKEN')
C('jenkins-api-token', 'Jenkins API token', 'jenkins', 'jenkins', ['jenkins'], r'11[a-f0-9]{32}|[a-f0-9]{32,36}', '11{h32}', 'JENKINS_API_TOKEN')
P('jenkins-crumb-url-creds', 'Jenkins user:token in URL', 'jenkins', r'''(?i)https?://[^:/@\s]{1,64}:(11[a-f0-9]{32})@''', ['jenkins'], '11{h32}', lines=['curl -X POST https://ci-bot:{S}@jenkins.test/job/x/build', 'JENKINS_URL=http://admin:{S}@jenkins:8080'], requires=['@'])
P('teamcity-token', 'TeamCity access token', 'teamcity', r'\b(eyJ0eXAiOiAiVENWMiJ9\.[A-Za-z0-9_\-]{36}\.[A-Za-z0-9_\-]{48})' + END, ['eyJ0eXAiOiAiVENWMiJ9'], 'eyJ0eXAiOiAiVENWMiJ9.{a36}.{a48}')
C('codecov-token', 'Codecov upload token', 'codecov', 'codecov', ['codecov'], r'[a-z0-9]{32}|' + UUID, '{U}', 'CODECOV_TOKEN', ci_filter=False)
C('codeclimate-reporter-id', 'Code Climate test reporter id', 'codeclimate', 'codeclimate|cc_test_reporter_id', ['codeclimate', 'cc_test_reporter_id'], r'[a-f0-9]{64}', '{h64}', 'CC_TEST_REPORTER_ID')
P('sonarqube-token', 'SonarQube / SonarCloud token', 'sonar', r'\b(sq[upa]_[a-f0-9]{40})\b', ['squ_', 'sqp_', 'sqa_'], 'squ_{h40}')
C('sonar-token-legacy', 'SonarQube token (legacy, context)', 'sonar', 'sonar', ['sonar'], r'[a-f0-9]{40}', '{h40}', 'SONAR_TOKEN')
C('snyk-token', 'Snyk API token', 'snyk', 'snyk', ['snyk'], UUID, '{U}', 'SNYK_TOKEN', ci_filter=False)
P('infracost-api-key', 'Infracost API key', 'infracost', r'(?:^|[^A-Za-z0-9_.\-/])(ico-[A-Za-z0-9]{32})\b', ['ico-'], 'ico-{a32}')
P('harness-token', 'Harness PAT / SAT', 'harness', r'\b((?:pat|sat)\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20})\b', ['pat.', 'sat.'], 'pat.{a22}.{a24}.{a20}')
P('readme-api-key', 'ReadMe API key', 'readme', r'\b(rdme_[a-z0-9]{70})\b', ['rdme_'], 'rdme_{l70}')
P('prefect-api-key', 'Prefect API key', 'prefect', r'\b(pnu_[A-Za-z0-9]{36})\b', ['pnu_'], 'pnu_{a36}')
C('sidekiq-secret', 'Sidekiq Enterprise/Pro credentials', 'sidekiq', r'BUNDLE_ENTERPRISE__CONTRIBSYS__COM|BUNDLE_GEMS__CONTRIBSYS__COM', ['contribsys__com'], r'[a-f0-9]{8}:[a-f0-9]{8}', '{h8}:{h8}', 'BUNDLE_GEMS__CONTRIBSYS__COM', conf='high')
P('sidekiq-url', 'Sidekiq gem server URL credentials', 'sidekiq', r'''(?i)https?://([a-f0-9]{8}:[a-f0-9]{8})@(?:gems|enterprise)\.contribsys\.com''', ['contribsys.com'], 'https://{h8}:{h8}@gems.contribsys.com/', requires=['@'])
C('cloudsmith-api-key', 'Cloudsmith API key', 'cloudsmith', 'cloudsmith', ['cloudsmith'], r'[a-f0-9]{40}', '{h40}', 'CLOUDSMITH_API_KEY')
C('gitea-token', 'Gitea / Forgejo access token', 'gitea', 'gitea|forgejo|gogs', ['gitea', 'forgejo', 'gogs'], r'[a-f0-9]{40}', '{h40}', 'GITEA_TOKEN')

# ---- Infrastructure / cloud -----------------------------------------------------------------
P('vault-service-token', 'HashiCorp Vault service token', 'hashicorp', r'\b(hvs\.[A-Za-z0-9_\-]{90,120})' + END, ['hvs.'], 'hvs.CAESI{w90}')
P('vault-batch-token', 'HashiCorp Vault batch token', 'hashicorp', r'\b(hvb\.[A-Za-z0-9_\-]{138,300})' + END, ['hvb.'], 'hvb.AAAAAQ{w150}')
P('vault-recovery-token', 'HashiCorp Vault recovery token', 'hashicorp', r'\b(hvr\.[A-Za-z0-9_\-]{20,120})' + END, ['hvr.'], 'hvr.{w90}')
C('vault-token-legacy', 'HashiCorp Vault token (legacy s./b.)', 'hashicorp', 'vault', ['vault'], r'[sb]\.[A-Za-z0-9_\-]{24,}', 's.{a24}', 'VAULT_TOKEN', conf='high')
P('terraform-cloud-token', 'Terraform Cloud / HCP Terraform API token', 'hashicorp', r'\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70})' + END_B64, ['atlasv1'], '{a14}.atlasv1.{a67}')
C('hcp-client-secret', 'HCP service principal secret', 'hashicorp', 'hcp[_-]client[_-]secret', ['hcp_client', 'hcp-client'], r'[A-Za-z0-9_\-]{64}', '{a64}', 'HCP_CLIENT_SECRET')
C('consul-token', 'Consul / Nomad ACL token', 'hashicorp', 'consul[_-]?(?:http[_-])?token|nomad[_-]token|acl[_-]token', ['consul', 'nomad', 'acl_token', 'acl-token'], UUID, '{U}', 'CONSUL_HTTP_TOKEN', ci_filter=False)
P('pulumi-token', 'Pulumi access token', 'pulumi', r'\b(pul-[a-f0-9]{40})\b', ['pul-'], 'pul-{h40}')
P('digitalocean-token', 'DigitalOcean PAT / OAuth / refresh token', 'digitalocean', r'\b(do[opr]_v1_[a-f0-9]{64})\b', ['dop_v1_', 'doo_v1_', 'dor_v1_'], 'dop_v1_{h64}')
C('heroku-api-key', 'Heroku API key (legacy UUID)', 'heroku', 'heroku', ['heroku'], UUID, '{U}', 'HEROKU_API_KEY', conf='high', ci_filter=False)
P('heroku-api-key-v2', 'Heroku API key (HRKU-)', 'heroku', r'\b(HRKU-AA[0-9A-Za-z_\-]{58})' + END, ['HRKU-'], 'HRKU-AA{a58}')
P('flyio-token', 'Fly.io access token', 'flyio', r'\b((?:fo1_[\w\-]{43}|fm1[ar]_[A-Za-z0-9+/]{100,}={0,3}|fm2_[A-Za-z0-9+/]{100,}={0,3}))' + END_B64, ['fo1_', 'fm1a_', 'fm1r_', 'fm2_'], 'fm2_{a120}')
C('flyio-token-context', 'Fly.io token (FlyV1 header)', 'flyio', 'flyv1|fly[_-]api[_-]token|fly[_-]access[_-]token', ['flyv1', 'fly_api', 'fly-api', 'fly_access', 'fly-access'], r'fm[12][ar]?_[A-Za-z0-9+/=,_\-]{60,}', 'fm2_{a80}', 'FLY_API_TOKEN', conf='high')
P('render-api-key', 'Render API key', 'render', r'\b(rnd_[A-Za-z0-9]{32})\b', ['rnd_'], 'rnd_{a32}')
C('railway-token', 'Railway token', 'railway', 'railway', ['railway'], UUID, '{U}', 'RAILWAY_TOKEN', ci_filter=False)
C('vercel-token', 'Vercel access token', 'vercel', 'vercel|now[_-]token', ['vercel', 'now_token', 'now-token'], r'[A-Za-z0-9]{24}', '{a24}', 'VERCEL_TOKEN', conf='high')
P('vercel-token-prefixed', 'Vercel token (prefixed)', 'vercel', r'\b(vc[pirka]_[A-Za-z0-9]{40,60})\b', ['vcp_', 'vci_', 'vcr_', 'vck_', 'vca_'], 'vcp_{a56}', conf='medium')
P('netlify-pat', 'Netlify personal access token', 'netlify', r'\b(nfp_[A-Za-z0-9]{36,40})\b', ['nfp_'], 'nfp_{a36}')
C('netlify-token', 'Netlify access token (context)', 'netlify', 'netlify', ['netlify'], r'[A-Za-z0-9=_\-]{40,46}', '{a43}', 'NETLIFY_AUTH_TOKEN')
P('supabase-pat', 'Supabase personal access token', 'supabase', r'\b(sbp_[a-f0-9]{40})\b', ['sbp_'], 'sbp_{h40}')
P('supabase-secret-key', 'Supabase secret API key', 'supabase', r'\b(sb_secret_[A-Za-z0-9_\-]{31,})' + END, ['sb_secret_'], 'sb_secret_{a31}')
P('planetscale-token', 'PlanetScale password / token', 'planetscale', r'\b(pscale_(?:pw|tkn|oauth)_[A-Za-z0-9=_.\-]{32,64})' + END, ['pscale_pw_', 'pscale_tkn_', 'pscale_oauth_'], 'pscale_pw_{a43}')
C('neon-api-key', 'Neon API key', 'neon', 'neon', ['neon'], r'[a-z0-9]{64}', '{l64}', 'NEON_API_KEY')
P('cloudflare-origin-ca-key', 'Cloudflare Origin CA key', 'cloudflare', r'\b(v1\.0-[a-f0-9]{24}-[a-f0-9]{146})\b', ['v1.0-'], 'v1.0-{h24}-{h146}')
C('cloudflare-api-token', 'Cloudflare API token', 'cloudflare', 'cloudflare|cf_api|cf_token|cf-api', ['cloudflare', 'cf_api', 'cf_token', 'cf-api'], r'[A-Za-z0-9_\-]{40}', '{a40}', 'CLOUDFLARE_API_TOKEN', conf='high')
C('cloudflare-global-api-key', 'Cloudflare global API key', 'cloudflare', 'cloudflare|cf_api|cf-auth-key|x-auth-key', ['cloudflare', 'cf_api', 'cf-auth-key', 'x-auth-key'], r'[a-f0-9]{37}', '{h37}', 'CLOUDFLARE_API_KEY', conf='high')
C('fastly-api-token', 'Fastly API token', 'fastly', 'fastly', ['fastly'], r'[A-Za-z0-9=_\-]{32}', '{a32}', 'FASTLY_API_TOKEN', conf='high')
C('akamai-client-secret', 'Akamai EdgeGrid client secret', 'akamai', 'akamai', ['akamai'], r'[A-Za-z0-9+/]{43}=', '{b43}=', 'AKAMAI_CLIENT_SECRET', conf='high')
P('akamai-client-token', 'Akamai EdgeGrid client/access token', 'akamai', r'\b(akab-[a-z0-9]{16}-[a-z0-9]{16})\b', ['akab-'], 'akab-{l16}-{l16}', conf='medium')
C('linode-token', 'Linode / Akamai Cloud token', 'linode', 'linode', ['linode'], r'[a-f0-9]{64}', '{h64}', 'LINODE_TOKEN', conf='high')
C('vultr-api-key', 'Vultr API key', 'vultr', 'vultr', ['vultr'], r'[A-Z0-9]{36}', '{u36}', 'VULTR_API_KEY', conf='high')
C('hetzner-token', 'Hetzner Cloud token', 'hetzner', 'hetzner|hcloud', ['hetzner', 'hcloud'], r'[A-Za-z0-9]{64}', '{a64}', 'HCLOUD_TOKEN', conf='high')
P('scaleway-access-key', 'Scaleway access key', 'scaleway', r'\b(SCW[A-Z0-9]{17})\b', ['SCW' + c for c in string.ascii_uppercase + string.digits], 'SCW{u17}', conf='medium')
C('scaleway-secret-key', 'Scaleway secret key', 'scaleway', 'scaleway|scw_secret', ['scaleway', 'scw_secret'], UUID, '{U}', 'SCW_SECRET_KEY', ci_filter=False)
P('alibaba-access-key-id', 'Alibaba Cloud AccessKey ID', 'alibaba', r'\b(LTAI[A-Za-z0-9]{12,20})\b', ['LTAI'], 'LTAI{a20}', conf='medium')
C('alibaba-secret-key', 'Alibaba Cloud AccessKey secret', 'alibaba', 'alibaba|aliyun|alicloud', ['alibaba', 'aliyun', 'alicloud'], r'[A-Za-z0-9]{30}', '{a30}', 'ALIBABA_CLOUD_ACCESS_KEY_SECRET', conf='high')
P('tencent-secret-id', 'Tencent Cloud SecretId', 'tencent', r'\b(AKID[A-Za-z0-9]{32})\b', ['AKID'], 'AKID{a32}', conf='medium')
C('tencent-secret-key', 'Tencent Cloud SecretKey', 'tencent', 'tencent|tencentcloud|qcloud', ['tencent', 'qcloud'], r'[A-Za-z0-9]{32}', '{a32}', 'TENCENTCLOUD_SECRET_KEY', conf='high')
C('huawei-secret-key', 'Huawei Cloud secret key', 'huawei', 'huawei|huaweicloud', ['huawei'], r'[A-Za-z0-9]{40}', '{a40}', 'HUAWEICLOUD_SDK_SK', conf='high')
C('ibm-cloud-api-key', 'IBM Cloud API key', 'ibm', r'ibm[_.\-]|ibmcloud|bluemix', ['ibm.', 'ibm_', 'ibm-', 'ibmcloud', 'bluemix'], r'[A-Za-z0-9_\-]{44}', '{a44}', 'IBMCLOUD_API_KEY', conf='high')
C('oracle-oci-key', 'Oracle Cloud auth token', 'oracle', 'oci[_-]|oracle', ['oci_', 'oci-', 'oracle'], r'[A-Za-z0-9+/=:;\-_.()<>]{20}', '{a20}', 'OCI_AUTH_TOKEN', min_entropy=3.5)
P('yandex-access-token', 'Yandex Cloud IAM token', 'yandex', r'\b(t1\.[A-Za-z0-9_\-]+={0,2}\.[A-Za-z0-9_\-]{86}={0,2})' + END_B64, ['yandex', 't1.9'], 't1.9eu{a20}.{a86}')
P('yandex-api-key', 'Yandex Cloud API key', 'yandex', r'\b(AQVN[A-Za-z0-9_\-]{35,38})' + END, ['AQVN'], 'AQVN{a36}')
C('yandex-aws-access-token', 'Yandex Cloud static access key', 'yandex', 'yandex', ['yandex'], r'YC[A-Za-z0-9_\-]{38}', 'YC{a38}', 'YANDEX_SECRET', conf='high')
C('backblaze-app-key', 'Backblaze B2 application key', 'backblaze', 'backblaze|b2_app|b2_application', ['backblaze', 'b2_app'], r'K[0-9]{3}[A-Za-z0-9+/]{27}', 'K005{a27}', 'B2_APPLICATION_KEY', conf='high')
C('wasabi-secret', 'Wasabi secret key', 'wasabi', 'wasabi', ['wasabi'], r'[A-Za-z0-9/+]{40}', '{a40}', 'WASABI_SECRET_KEY', conf='high')
C('digitalocean-spaces-secret', 'DigitalOcean Spaces secret', 'digitalocean', r'spaces[_-]?secret', ['spaces'], r'[A-Za-z0-9/+]{43}', '{a43}', 'SPACES_SECRET_KEY', conf='high')
C('databricks-token-context', 'Databricks token (context)', 'databricks', 'databricks', ['databricks'], r'dapi[a-f0-9]{32}(?:-\d)?', 'dapi{h32}', 'DATABRICKS_TOKEN', conf='high')
P('databricks-token', 'Databricks personal access token', 'databricks', r'\b(dapi[a-f0-9]{32}(?:-\d)?)\b', ['dapi'], 'dapi{h32}')
P('dynatrace-token', 'Dynatrace API token', 'dynatrace', r'\b(dt0[a-z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64})\b', ['dt0' + c for c in string.ascii_lowercase], 'dt0c01.{u24}.{u64}')
P('age-secret-key', 'age secret key', 'age', r'\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b', ['AGE-SECRET-KEY-1'], (lambda: 'AGE-SECRET-KEY-1' + rnd('B', 58).upper()),
  lines=['# created: 2026-01-01\nAGE-SECRET-KEY-1{B58}'.split('\n')[1].replace('AGE-SECRET-KEY-1{B58}', '{S}'), 'SOPS_AGE_KEY={S}'])
P('doppler-token', 'Doppler token', 'doppler', r'\b(dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_\-]{2,35}\.)?[A-Za-z0-9]{40,44})\b', ['dp.pt.', 'dp.st.', 'dp.sa.', 'dp.ct.', 'dp.scim.', 'dp.audit.'], 'dp.st.{a43}')
P('infisical-token', 'Infisical service token', 'infisical', r'\b(st\.[a-f0-9\-]{36}\.[a-f0-9]{32}\.[a-f0-9]{32})\b', ['infisical'], 'st.{U}.{h32}.{h32}', lines=['INFISICAL_TOKEN={S}', 'infisical export --token {S}'])
P('onepassword-service-account', '1Password service account token', 'onepassword', r'\b(ops_eyJ[A-Za-z0-9+/]{250,}={0,3})' + END_B64, ['ops_eyJ'], 'ops_eyJ{a260}')
P('onepassword-secret-key', '1Password account secret key', 'onepassword', r'\b(A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5})\b', ['1password', 'onepassword', 'op_secret', 'secret key', 'secret_key', 'secretkey', 'account key'], 'A3-{u6}-{u11}-{u5}-{u5}-{u5}', lines=['OP_SECRET_KEY={S}', '1password account secret key: {S}'])
P('tailscale-key', 'Tailscale auth / API key', 'tailscale', r'\b(tskey-(?:api|auth|client|scim|webhook)-[A-Za-z0-9]{8,20}-[A-Za-z0-9]{20,40})\b', ['tskey-'], 'tskey-auth-k{a10}-{a33}')
C('ngrok-authtoken', 'ngrok authtoken', 'ngrok', 'ngrok', ['ngrok'], r'[0-9A-Za-z]{25,27}_[0-9A-Za-z]{20,22}', '{a27}_{a21}', 'NGROK_AUTHTOKEN', conf='high')
C('kubernetes-bootstrap-token', 'Kubernetes bootstrap token', 'kubernetes', r'kubeadm|bootstrap[_-]?token|--token', ['kubeadm', 'bootstrap', '--token'], r'[a-z0-9]{6}\.[a-z0-9]{16}', '{l6}.{l16}', 'BOOTSTRAP_TOKEN', conf='high')
R('kubeconfig-client-key-data', 'kubeconfig client-key-data', 'kubernetes', 'high', r'''client-key-data\s*:\s*["']?([A-Za-z0-9+/]{40,}={0,2})''', ['client-key-data'],
  'LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo{b120}', lines=['    client-key-data: {S}', 'client-key-data: "{S}"'])
C('kubernetes-secret-token', 'OpenShift token', 'kubernetes', 'openshift|oc[_-]token|sha256~', ['openshift', 'oc_token', 'oc-token', 'sha256~'], r'sha256~[A-Za-z0-9_\-]{43}', 'sha256~{a43}', 'OPENSHIFT_TOKEN', conf='high')
P('openshift-token', 'OpenShift user token', 'kubernetes', r'''(?:^|[^0-9A-Za-z_\-])(sha256~[A-Za-z0-9_\-]{43})''' + END, ['sha256~'], 'sha256~{a43}')

# ---- Observability --------------------------------------------------------------------------
C('datadog-api-key', 'Datadog API key', 'datadog', 'datadog|dd[_-]api[_-]key|dd-api-key', ['datadog', 'dd_api', 'dd-api'], r'[a-f0-9]{32}', '{h32}', 'DD_API_KEY', conf='high')
C('datadog-app-key', 'Datadog application key', 'datadog', 'datadog|dd[_-]app(?:lication)?[_-]key|dd-application-key', ['datadog', 'dd_app', 'dd-app', 'dd-application'], r'[a-f0-9]{40}', '{h40}', 'DD_APP_KEY', conf='high')
P('newrelic-user-api-key', 'New Relic user API key', 'newrelic', r'\b(NRAK-[A-Z0-9]{27})\b', ['NRAK-'], 'NRAK-{u27}')
P('newrelic-admin-key', 'New Relic admin API key', 'newrelic', r'\b(NRAA-[a-f0-9]{27})\b', ['NRAA-'], 'NRAA-{h27}')
P('newrelic-insert-key', 'New Relic insights insert key', 'newrelic', r'\b(NRII-[A-Za-z0-9_\-]{32})' + END, ['NRII-'], 'NRII-{a32}')
P('newrelic-query-key', 'New Relic insights query key', 'newrelic', r'\b(NRIQ-[A-Za-z0-9_\-]{32})' + END, ['NRIQ-'], 'NRIQ-{a32}')
P('newrelic-browser-key', 'New Relic browser API key', 'newrelic', r'\b(NRJS-[a-f0-9]{19})\b', ['NRJS-'], 'NRJS-{h19}', conf='medium')
P('newrelic-rest-key', 'New Relic REST API key', 'newrelic', r'\b(NRRA-[a-f0-9]{42})\b', ['NRRA-'], 'NRRA-{h42}')
P('newrelic-license-key', 'New Relic ingest license key', 'newrelic', r'\b([a-f0-9]{36}NRAL)\b', ['NRAL'], '{h36}NRAL')
C('newrelic-license-key-legacy', 'New Relic license key (legacy)', 'newrelic', 'new[_-]?relic|nr[_-]license', ['newrelic', 'new_relic', 'new-relic', 'nr_license', 'nr-license'], r'[a-f0-9]{40}', '{h40}', 'NEW_RELIC_LICENSE_KEY', conf='high')
P('sentry-org-token', 'Sentry organization auth token', 'sentry', r'\b(sntrys_eyJpYXQiO[A-Za-z0-9+/=_\-]{60,})' + END_B64, ['sntrys_'], 'sntrys_eyJpYXQiO{a120}')
P('sentry-user-token', 'Sentry user auth token', 'sentry', r'\b(sntryu_[a-f0-9]{64})\b', ['sntryu_'], 'sntryu_{h64}')
C('sentry-auth-token-legacy', 'Sentry auth token (legacy)', 'sentry', 'sentry', ['sentry'], r'[a-f0-9]{64}', '{h64}', 'SENTRY_AUTH_TOKEN', conf='high')
P('grafana-api-key', 'Grafana API key', 'grafana', r'\b(eyJrIjoi[A-Za-z0-9]{60,400}={0,2})' + END_B64, ['eyJrIjoi'], 'eyJrIjoi{a70}')
P('grafana-cloud-token', 'Grafana Cloud access policy token', 'grafana', r'\b(glc_[A-Za-z0-9+/]{32,400}={0,2})' + END_B64, ['glc_'], 'glc_{a80}')
P('grafana-service-account', 'Grafana service account token', 'grafana', r'\b(glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})\b', ['glsa_'], 'glsa_{a32}_{h8}')
C('sumologic-access-id', 'Sumo Logic access id', 'sumologic', 'sumo', ['sumo'], r'su[A-Za-z0-9]{12}', 'su{a12}', 'SUMO_ACCESS_ID')
C('sumologic-access-key', 'Sumo Logic access key', 'sumologic', 'sumo', ['sumo'], r'[A-Za-z0-9]{64}', '{a64}', 'SUMO_ACCESS_KEY', conf='high')
R('splunk-hec-token', 'Splunk HEC token', 'splunk', 'high', r'''(?i)(?:authorization:\s*splunk\s+|splunk[_-]?(?:hec)?[_-]?token[\s'"]{0,3}[:=][\s'"]{0,3})(''' + UUID + ')', ['splunk'], '{U}',
  lines=['curl -H "Authorization: Splunk {S}" https://hec.test:8088', 'SPLUNK_HEC_TOKEN={S}'], ci_filter=False)
C('honeycomb-key', 'Honeycomb API key', 'honeycomb', 'honeycomb', ['honeycomb'], r'[A-Za-z0-9]{22}|[A-Za-z0-9]{32}|hc[a-z]{2,3}_[A-Za-z0-9]{58}', '{a32}', 'HONEYCOMB_API_KEY', conf='high')
P('honeycomb-ingest-key', 'Honeycomb ingest key', 'honeycomb', r'\b(hc[ax]i[ck]_[A-Za-z0-9]{58})\b', ['hcaik_', 'hcxik_', 'hcaic_', 'hcxic_'], 'hcaik_{a58}')
C('rollbar-token', 'Rollbar access token', 'rollbar', 'rollbar', ['rollbar'], HEX32, '{h32}', 'ROLLBAR_ACCESS_TOKEN', conf='high')
C('bugsnag-key', 'Bugsnag API key', 'bugsnag', 'bugsnag', ['bugsnag'], HEX32, '{h32}', 'BUGSNAG_API_KEY', conf='high')
P('honeybadger-token', 'Honeybadger personal token', 'honeybadger', r'\b(hbp_[A-Za-z0-9]{36})\b', ['hbp_'], 'hbp_{a36}')
C('loggly-token', 'Loggly customer token', 'loggly', 'loggly', ['loggly'], UUID, '{U}', 'LOGGLY_TOKEN', ci_filter=False)
C('logzio-token', 'Logz.io shipping token', 'logzio', r'logz\.?io', ['logzio', 'logz.io'], r'[A-Za-z]{32}', '{L32}', 'LOGZIO_TOKEN', conf='high')
P('coralogix-key', 'Coralogix key', 'coralogix', r'\b(cx(?:tp|tu)_[A-Za-z0-9]{30})\b', ['cxtp_', 'cxtu_'], 'cxtp_{a30}')
C('lightstep-token', 'Lightstep access token', 'lightstep', 'lightstep', ['lightstep'], r'[A-Za-z0-9+/=]{84,180}', '{a128}', 'LIGHTSTEP_ACCESS_TOKEN', conf='high')
C('pagerduty-key', 'PagerDuty API key', 'pagerduty', 'pagerduty|pd[_-]api', ['pagerduty', 'pd_api', 'pd-api'], r'u\+[A-Za-z0-9_+\-]{18}|[A-Za-z0-9_+\-]{20}', 'u+{a18}', 'PAGERDUTY_TOKEN', conf='high')
C('opsgenie-key', 'Opsgenie API key', 'opsgenie', 'opsgenie|genie[_-]?key', ['opsgenie', 'geniekey', 'genie_key', 'genie-key'], UUID, '{U}', 'OPSGENIE_API_KEY', conf='high', ci_filter=False)
C('elastic-api-key', 'Elastic API key / cloud key', 'elastic', 'elastic|es[_-]api[_-]key|kibana', ['elastic', 'es_api', 'es-api', 'kibana'], r'[A-Za-z0-9_\-=]{40,100}', '{a60}==', 'ELASTIC_API_KEY', min_entropy=3.5)
C('launchdarkly-token', 'LaunchDarkly access token', 'launchdarkly', 'launchdarkly|ld[_-]sdk|ld[_-]api', ['launchdarkly', 'ld_sdk', 'ld_api', 'ld-sdk', 'ld-api'], r'(?:api|sdk|mob)-' + UUID + r'|[A-Za-z0-9=_\-]{40}', 'api-{U}', 'LAUNCHDARKLY_ACCESS_TOKEN', conf='high')
P('launchdarkly-key', 'LaunchDarkly API/SDK key', 'launchdarkly', r'\b((?:api|sdk)-' + UUID + r')\b', ['api-', 'sdk-'], 'sdk-{U}', conf='medium', ci_filter=False)
P('statsig-secret', 'Statsig server secret', 'statsig', r'\b(secret-[A-Za-z0-9]{43})\b', ['secret-'], 'secret-{a43}', conf='medium')
P('posthog-personal-key', 'PostHog personal API key', 'posthog', r'\b(phx_[A-Za-z0-9]{43})\b', ['phx_'], 'phx_{a43}')
C('segment-token', 'Segment public API token / write key', 'segment', 'segment', ['segment'], r'sgp_[A-Za-z0-9]{64}|[A-Za-z0-9]{32}', '{a32}', 'SEGMENT_WRITE_KEY', conf='medium')
C('mixpanel-secret', 'Mixpanel API secret', 'mixpanel', 'mixpanel', ['mixpanel'], HEX32, '{h32}', 'MIXPANEL_API_SECRET', conf='high')
C('amplitude-secret', 'Amplitude secret key', 'amplitude', 'amplitude', ['amplitude'], HEX32, '{h32}', 'AMPLITUDE_SECRET_KEY', conf='high')

# ---- AI -------------------------------------------------------------------------------------
P('openai-api-key', 'OpenAI API key', 'openai', r'\b(sk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{16,200}T3BlbkFJ[A-Za-z0-9_\-]{16,200})' + END, ['T3BlbkFJ'], 'sk-proj-{a58}T3BlbkFJ{a58}')
P('openai-api-key-v2', 'OpenAI project / service account key', 'openai', r'\b(sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{80,200})' + END, ['sk-proj-', 'sk-svcacct-', 'sk-admin-'], 'sk-proj-{a120}')
C('openai-legacy-key', 'OpenAI API key (legacy sk- with context)', 'openai', r'openai|gpt[_.\-0-9]|chatgpt', ['openai', 'gpt.'] + ['gpt%d' % d for d in range(10)] + ['gpt_', 'gpt-', 'chatgpt'], r'sk-[A-Za-z0-9]{48}', 'sk-{a48}', 'OPENAI_API_KEY', conf='high')
P('anthropic-api-key', 'Anthropic API key', 'anthropic', r'\b(sk-ant-(?:api|admin|sid)\d\d-[A-Za-z0-9_\-]{80,120})' + END, ['sk-ant-'], 'sk-ant-api03-{a93}AA')
P('huggingface-token', 'Hugging Face access token', 'huggingface', r'\b(hf_[A-Za-z0-9]{34,40})\b', ['hf_' + c for c in string.ascii_lowercase + string.digits], 'hf_{L34}')
P('huggingface-org-token', 'Hugging Face organization token', 'huggingface', r'\b(api_org_[A-Za-z0-9]{34})\b', ['api_org_'], 'api_org_{L34}')
P('perplexity-api-key', 'Perplexity API key', 'perplexity', r'\b(pplx-[A-Za-z0-9]{48})\b', ['pplx-'], 'pplx-{a48}')
P('groq-api-key', 'Groq API key', 'groq', r'\b(gsk_[A-Za-z0-9]{52})\b', ['gsk_'], 'gsk_{a52}')
P('xai-api-key', 'xAI API key', 'xai', r'\b(xai-[A-Za-z0-9]{80})\b', ['xai-'], 'xai-{a80}')
P('replicate-token', 'Replicate API token', 'replicate', r'\b(r8_[A-Za-z0-9]{37})\b', ['r8_' + c for c in string.ascii_lowercase + string.digits], 'r8_{a37}')
P('openrouter-key', 'OpenRouter API key', 'openrouter', r'\b(sk-or-v1-[a-f0-9]{64})\b', ['sk-or-v1-'], 'sk-or-v1-{h64}')
P('langsmith-key', 'LangSmith API key', 'langchain', r'\b(lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b', ['lsv2_'], 'lsv2_pt_{h32}_{h10}')
P('pinecone-key', 'Pinecone API key', 'pinecone', r'\b(pcsk_[A-Za-z0-9_]{50,})\b', ['pcsk_'], 'pcsk_{a6}_{a60}')
P('tavily-key', 'Tavily API key', 'tavily', r'\b(tvly-(?:dev-|prod-)?[A-Za-z0-9]{32})\b', ['tvly-'], 'tvly-{a32}')
P('jina-key', 'Jina AI API key', 'jina', r'\b(jina_[A-Za-z0-9]{60})\b', ['jina_'], 'jina_{a60}')
C('cohere-key', 'Cohere API key', 'cohere', 'cohere|co_api_key', ['cohere', 'co_api_key'], r'[A-Za-z0-9]{40}', '{a40}', 'COHERE_API_KEY', conf='high')
C('mistral-key', 'Mistral API key', 'mistral', 'mistral', ['mistral'], r'[A-Za-z0-9]{32}', '{a32}', 'MISTRAL_API_KEY', conf='high')
C('deepseek-key', 'DeepSeek API key', 'deepseek', 'deepseek', ['deepseek'], r'sk-[a-f0-9]{32}', 'sk-{h32}', 'DEEPSEEK_API_KEY', conf='high')
C('elevenlabs-key', 'ElevenLabs API key', 'elevenlabs', 'elevenlabs|xi-api-key', ['elevenlabs', 'xi-api-key'], r'(?:sk_)?[a-f0-9]{32,48}', 'sk_{h48}', 'ELEVENLABS_API_KEY', conf='high')
C('wandb-key', 'Weights & Biases API key', 'wandb', 'wandb', ['wandb'], r'[a-f0-9]{40}', '{h40}', 'WANDB_API_KEY', conf='high')
P('fireworks-key', 'Fireworks AI API key', 'fireworks', r'\b(fw_[A-Za-z0-9]{24})\b', ['fw_' + c for c in string.ascii_lowercase + string.digits], 'fw_{a24}', conf='medium')
C('privateai-key', 'Private AI API key', 'privateai', r'private[_-]?ai', ['privateai', 'private_ai', 'private-ai'], r'[a-z0-9]{32}', '{l32}', 'PRIVATE_AI_API_KEY', conf='high')

# ---- Productivity / SaaS --------------------------------------------------------------------
P('linear-api-key', 'Linear API key', 'linear', r'\b(lin_api_[A-Za-z0-9]{40})\b', ['lin_api_'], 'lin_api_{a40}')
C('linear-client-secret', 'Linear OAuth client secret', 'linear', 'linear', ['linear'], HEX32, '{h32}', 'LINEAR_CLIENT_SECRET', conf='high')
P('asana-pat', 'Asana personal access token', 'asana', r'\b([0-9]/[0-9]{10,20}(?:/[0-9]{10,20})?:[A-Za-z0-9]{32})\b', ['asana'], '2/{d16}/{d16}:{h32}', conf='medium',
  lines=['export ASANA_PAT="{S}"', 'asana token: {S}'])
C('asana-client-secret', 'Asana client secret / id', 'asana', 'asana', ['asana'], r'[a-z0-9]{32}|[0-9]{16}', '{l32}', 'ASANA_CLIENT_SECRET', conf='high')
P('notion-token', 'Notion integration token', 'notion', r'\b(ntn_[0-9]{11}[A-Za-z0-9]{35})\b', ['ntn_'], 'ntn_{d11}{a35}')
C('notion-token-legacy', 'Notion integration secret (legacy)', 'notion', 'notion', ['notion'], r'secret_[A-Za-z0-9]{43}', 'secret_{a43}', 'NOTION_TOKEN', conf='high')
P('airtable-pat', 'Airtable personal access token', 'airtable', r'\b(pat[A-Za-z0-9]{14}\.[a-f0-9]{64})\b', ['airtable'], 'pat{a14}.{h64}', lines=['AIRTABLE_TOKEN={S}', 'airtable: {S}'])
C('airtable-api-key', 'Airtable API key (legacy)', 'airtable', 'airtable', ['airtable'], r'key[A-Za-z0-9]{14}|[a-z0-9]{17}', 'key{a14}', 'AIRTABLE_API_KEY', conf='high')
P('figma-token', 'Figma personal access token', 'figma', r'\b(figd_[A-Za-z0-9_\-]{40})' + END, ['figd_'], 'figd_{a40}')
C('figma-token-legacy', 'Figma token (context)', 'figma', 'figma', ['figma'], r'[0-9]{6}-' + UUID, '{d6}-{U}', 'FIGMA_TOKEN', conf='high', ci_filter=False)
P('typeform-token', 'Typeform personal token', 'typeform', r'\b(tfp_[A-Za-z0-9_\-.=]{59})' + END, ['tfp_'], 'tfp_{a59}')
C('trello-key', 'Trello API key / token', 'trello', 'trello', ['trello'], r'[a-f0-9]{64}|[a-f0-9]{32}', '{h64}', 'TRELLO_TOKEN', conf='high')
C('zendesk-token', 'Zendesk API token', 'zendesk', 'zendesk', ['zendesk'], r'[A-Za-z0-9]{40}', '{a40}', 'ZENDESK_API_TOKEN', conf='high')
C('freshdesk-key', 'Freshdesk API key', 'freshdesk', 'freshdesk', ['freshdesk'], r'[A-Za-z0-9]{20}', '{a20}', 'FRESHDESK_API_KEY', conf='high')
C('freshbooks-token', 'FreshBooks access token', 'freshbooks', 'freshbooks', ['freshbooks'], r'[a-z0-9]{64}', '{l64}', 'FRESHBOOKS_TOKEN', conf='high')
C('hubspot-api-key', 'HubSpot API key (legacy)', 'hubspot', 'hubspot', ['hubspot'], UUID, '{U}', 'HUBSPOT_API_KEY', conf='high', ci_filter=False)
P('hubspot-private-app-token', 'HubSpot private app token', 'hubspot', r'\b(pat-(?:na|eu)[0-9]-' + UUID + r')\b', ['pat-na', 'pat-eu'], 'pat-na1-{U}')
P('salesforce-access-token', 'Salesforce access token', 'salesforce', r'\b(00D[A-Za-z0-9]{12,15}![A-Za-z0-9_.]{96})', ['00D' + c for c in string.ascii_lowercase + string.digits], '00D{a12}!{a96}')
C('pipedrive-token', 'Pipedrive API token', 'pipedrive', 'pipedrive', ['pipedrive'], r'[a-f0-9]{40}', '{h40}', 'PIPEDRIVE_API_TOKEN', conf='high')
C('dropbox-api-secret', 'Dropbox API secret', 'dropbox', 'dropbox', ['dropbox'], r'[a-z0-9]{15}', '{l15}', 'DROPBOX_APP_SECRET', conf='medium')
P('dropbox-short-lived-token', 'Dropbox short-lived access token', 'dropbox', r'\b(sl\.[A-Za-z0-9\-=_]{135,})' + END_B64, ['dropbox', 'sl.u', 'sl.a', 'sl.b'], 'sl.{a140}')
C('dropbox-long-lived-token', 'Dropbox long-lived access token', 'dropbox', 'dropbox', ['dropbox'], r'[a-z0-9]{11}AAAAAAAAAA[a-z0-9\-_=]{43}', '{l11}AAAAAAAAAA{l43}', 'DROPBOX_TOKEN', conf='high')
C('box-token', 'Box developer token / client secret', 'box', r'box[_-]', ['box_', 'box-'], r'[A-Za-z0-9]{32}', '{a32}', 'BOX_CLIENT_SECRET', conf='medium')
C('miro-token', 'Miro access token', 'miro', 'miro', ['miro'], r'eyJtaXJvLm9yaWdpbiI6[A-Za-z0-9_\-]{20,}|[A-Za-z0-9_\-]{27}', '{a27}', 'MIRO_TOKEN', conf='medium')
C('zoom-secret', 'Zoom API secret / JWT', 'zoom', 'zoom', ['zoom'], r'[A-Za-z0-9]{32,36}', '{a32}', 'ZOOM_CLIENT_SECRET', conf='medium')
P('clickup-token', 'ClickUp personal token', 'clickup', r'\b(pk_[0-9]{6,10}_[A-Z0-9]{32})\b', ['pk_' + d for d in '0123456789'], 'pk_{d8}_{u32}')
P('contentful-pat', 'Contentful personal access token', 'contentful', r'\b(CFPAT-[A-Za-z0-9_\-]{43})' + END, ['CFPAT-'], 'CFPAT-{a43}')
C('contentful-token', 'Contentful delivery token', 'contentful', 'contentful', ['contentful'], r'[A-Za-z0-9=_\-]{43}', '{a43}', 'CONTENTFUL_ACCESS_TOKEN', conf='high')
C('squarespace-token', 'Squarespace access token', 'squarespace', 'squarespace', ['squarespace'], UUID, '{U}', 'SQUARESPACE_TOKEN', conf='high', ci_filter=False)
C('etsy-token', 'Etsy access token', 'etsy', 'etsy', ['etsy'], r'[a-z0-9]{24}', '{l24}', 'ETSY_API_KEY', conf='high')
C('shippo-token-context', 'Shippo token (context)', 'shippo', 'shippo', ['shippo'], r'shippo_(?:live|test)_[a-f0-9]{40}', 'shippo_live_{h40}', 'SHIPPO_API_TOKEN', conf='high')
P('shippo-token', 'Shippo API token', 'shippo', r'\b(shippo_(?:live|test)_[a-f0-9]{40})\b', ['shippo_'], 'shippo_live_{h40}')
P('easypost-api-key', 'EasyPost API / test key', 'easypost', r'\b(EZ[AT]K[A-Za-z0-9]{54})\b', ['EZAK', 'EZTK'], 'EZAK{a54}')
C('lob-api-key', 'Lob API key', 'lob', r'lob[_.\-]', ['lob_', 'lob-', 'lob.'], r'(?:live|test)_[a-f0-9]{35}|(?:test|live)_pub_[a-f0-9]{31}', 'live_{h35}', 'LOB_API_KEY', conf='high')
P('duffel-token', 'Duffel API token', 'duffel', r'\b(duffel_(?:test|live)_[A-Za-z0-9_\-=]{43})' + END_B64, ['duffel_'], 'duffel_live_{a43}')
P('frameio-token', 'Frame.io API token', 'frameio', r'\b(fio-u-[A-Za-z0-9\-_=]{64})' + END_B64, ['fio-u-'], 'fio-u-{a64}')
P('scalingo-token', 'Scalingo API token', 'scalingo', r'\b(tk-us-[A-Za-z0-9_\-]{48})' + END, ['tk-us-'], 'tk-us-{a48}')
P('intra42-secret', '42 intra client secret', 'intra42', r'\b(s-s4t2(?:ud|af)-[a-f0-9]{64})\b', ['s-s4t2'], 's-s4t2ud-{h64}')
C('algolia-key', 'Algolia admin API key', 'algolia', 'algolia', ['algolia'], r'[a-z0-9]{32}', '{l32}', 'ALGOLIA_ADMIN_KEY', conf='high')
C('meilisearch-key', 'Meilisearch master key', 'meilisearch', 'meili', ['meili'], r'[A-Za-z0-9_\-]{32,64}', '{a40}', 'MEILI_MASTER_KEY', conf='high', min_entropy=3.5)
C('typesense-key', 'Typesense API key', 'typesense', 'typesense', ['typesense'], r'[A-Za-z0-9]{32}', '{a32}', 'TYPESENSE_API_KEY', conf='high')
C('confluent-key', 'Confluent API key / secret', 'confluent', 'confluent', ['confluent'], r'[A-Za-z0-9+/]{64}|[A-Z0-9]{16}', '{a64}', 'CONFLUENT_CLOUD_API_SECRET', conf='high')
C('upstash-token', 'Upstash token', 'upstash', 'upstash', ['upstash'], r'[A-Za-z0-9=_\-]{40,100}', '{a60}=', 'UPSTASH_REDIS_REST_TOKEN', conf='high', min_entropy=3.5)
C('fauna-secret', 'Fauna secret', 'fauna', 'fauna', ['fauna'], r'fn[A-Za-z0-9_\-]{38}', 'fn{a38}', 'FAUNA_SECRET', conf='high')
P('mapbox-secret-token', 'Mapbox secret / temporary token', 'mapbox', r'\b((?:sk|tk)\.eyJ1[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{20,})' + END, ['sk.eyj1', 'tk.eyj1'], 'sk.eyJ1Ijoi{a30}.{a22}')
C('mapbox-token-context', 'Mapbox public token (context)', 'mapbox', 'mapbox', ['mapbox'], r'pk\.eyJ1[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{20,}', 'pk.eyJ1Ijoi{a30}.{a22}', 'MAPBOX_TOKEN', conf='low')
C('here-api-key', 'HERE API key', 'here', r'here[_-]api', ['here_api', 'here-api'], r'[A-Za-z0-9_\-]{43}', '{a43}', 'HERE_API_KEY', conf='high')
C('okta-token', 'Okta API token', 'okta', 'okta', ['okta'], r'00[A-Za-z0-9=_\-]{40}', '00{a40}', 'OKTA_API_TOKEN', conf='high')
C('auth0-client-secret', 'Auth0 client secret', 'auth0', r'auth0', ['auth0'], r'[A-Za-z0-9_\-]{64}', '{a64}', 'AUTH0_CLIENT_SECRET_VALUE', conf='high', counter=['export AUTH0_CLIENT_ID=xx'])
C('onelogin-secret', 'OneLogin client secret', 'onelogin', 'onelogin', ['onelogin'], r'[a-f0-9]{64}', '{h64}', 'ONELOGIN_CLIENT_SECRET', conf='high')
C('duo-integration-key', 'Duo integration key', 'duo', r'duo[_.\-]|ikey', ['duo.', 'duo_', 'duo-', 'ikey'], r'DI[A-Z0-9]{18}', 'DI{u18}', 'DUO_IKEY', conf='low')
C('duo-secret-key', 'Duo secret key', 'duo', r'duo[_.\-]|duoskey', ['duo_', 'duo-', 'duo.', 'duoskey'], r'[A-Za-z0-9]{40}', '{a40}', 'DUO_SECRET_KEY', conf='high')
P('clerk-secret-key', 'Clerk secret key', 'clerk', r'\b(sk_(?:test|live)_[A-Za-z0-9]{40,60})\b', ['sk_test_', 'sk_live_'], 'sk_live_{a50}')
C('twitch-token', 'Twitch API token', 'twitch', 'twitch', ['twitch'], r'[a-z0-9]{30}', '{l30}', 'TWITCH_CLIENT_SECRET', conf='high')
C('twitter-api-key', 'Twitter API key', 'twitter', 'twitter|consumer[_-]?key', ['twitter', 'consumer'], r'[A-Za-z0-9]{25}', '{a25}', 'TWITTER_API_KEY', conf='medium')
C('twitter-api-secret', 'Twitter API secret', 'twitter', 'twitter|consumer[_-]?secret', ['twitter', 'consumer'], r'[A-Za-z0-9]{50}', '{a50}', 'TWITTER_API_SECRET', conf='high')
C('twitter-access-token', 'Twitter access token', 'twitter', 'twitter', ['twitter'], r'[0-9]{15,25}-[A-Za-z0-9]{20,40}', '{d19}-{a30}', 'TWITTER_ACCESS_TOKEN', conf='high')
P('twitter-bearer-token', 'Twitter bearer token', 'twitter', r'\b(A{22}[A-Za-z0-9%]{80,100})\b', ['AAAAAAAAAAAAAAAAAAAAA'], 'AAAAAAAAAAAAAAAAAAAAAA{a90}', literal_secret=True)
P('facebook-access-token', 'Facebook / Meta access token', 'facebook', r'\b(EAA[MC][A-Za-z0-9]{20,})\b', ['EAAM', 'EAAC'], 'EAAC{a100}', conf='medium')
C('facebook-secret', 'Facebook app secret', 'facebook', 'facebook|fb[_-]app', ['facebook', 'fb_app', 'fb-app'], HEX32, '{h32}', 'FACEBOOK_APP_SECRET', conf='high')
C('linkedin-secret', 'LinkedIn client secret', 'linkedin', 'linked[_-]?in', ['linkedin', 'linked_in', 'linked-in'], r'[A-Za-z0-9]{16}', '{a16}', 'LINKEDIN_CLIENT_SECRET', conf='high')
C('spotify-secret', 'Spotify client secret', 'spotify', 'spotify', ['spotify'], HEX32, '{h32}', 'SPOTIFY_CLIENT_SECRET', conf='high')
C('pinterest-token', 'Pinterest access token', 'pinterest', 'pinterest', ['pinterest'], r'pina_[A-Z0-9]{96}|[A-Za-z0-9_\-]{80,}', 'pina_{u96}', 'PINTEREST_TOKEN', conf='high')
C('reddit-secret', 'Reddit client secret', 'reddit', 'reddit', ['reddit'], r'[A-Za-z0-9_\-]{27,30}', '{a30}', 'REDDIT_CLIENT_SECRET', conf='high')
C('nytimes-key', 'New York Times API key', 'nytimes', 'nytimes|new[_-]?york[_-]?times', ['nytimes'] + ['new%syork%stimes' % (a, b) for a in ('', '_', '-') for b in ('', '_', '-')], r'[A-Za-z0-9=_\-]{32}', '{a32}', 'NYTIMES_API_KEY', conf='high')
C('nasa-key', 'NASA API key', 'nasa', 'nasa', ['nasa'], r'[A-Za-z0-9]{40}', '{a40}', 'NASA_API_KEY', conf='high')
C('finnhub-key', 'Finnhub access token', 'finnhub', 'finnhub', ['finnhub'], r'[a-z0-9]{20}', '{l20}', 'FINNHUB_TOKEN', conf='high')
C('rapidapi-key', 'RapidAPI key', 'rapidapi', 'rapidapi|x-rapidapi-key', ['rapidapi'], r'[A-Za-z0-9_\-]{50}', '{a50}', 'RAPIDAPI_KEY', conf='high')
C('flickr-key', 'Flickr access token', 'flickr', 'flickr', ['flickr'], r'[a-z0-9]{32}', '{l32}', 'FLICKR_API_KEY', conf='high')
C('adafruit-key', 'Adafruit IO key', 'adafruit', 'adafruit|aio[_-]key', ['adafruit', 'aio_key', 'aio-key'], r'[A-Za-z0-9_\-]{32}', '{a32}', 'ADAFRUIT_IO_KEY', conf='high')
P('adobe-client-secret', 'Adobe client secret', 'adobe', r'\b(p8e-[A-Za-z0-9]{32})\b', ['p8e-'], 'p8e-{a32}')
C('adobe-client-id', 'Adobe client id', 'adobe', 'adobe', ['adobe'], HEX32, '{h32}', 'ADOBE_CLIENT_ID', conf='medium')
C('beamer-token', 'Beamer API token', 'beamer', 'beamer', ['beamer'], r'b_[A-Za-z0-9=_\-]{44}', 'b_{a44}', 'BEAMER_API_KEY', conf='high')
P('defined-networking-token', 'Defined Networking API token', 'definednetworking', r'\b(dnkey-[A-Za-z0-9=_\-]{26}-[A-Za-z0-9=_\-]{52})' + END_B64, ['dnkey-'], 'dnkey-{a26}-{a52}')
P('authress-key', 'Authress service client key', 'authress', r'\b((?:sc|ext|scauth|authress)_[a-z0-9]{5,30}\.[a-z0-9]{4,6}\.acc[_\-][a-z0-9\-]{10,32}\.[A-Za-z0-9+/_=\-]{30,120})' + END_B64, ['authress', 'scauth_'],
  'authress_{l10}.{l5}.acc_{l16}.{a60}')
C('particle-token', 'Particle.io access token', 'particleio', 'particle', ['particle'], r'[a-f0-9]{40}', '{h40}', 'PARTICLE_ACCESS_TOKEN', conf='high')
C('blynk-token', 'Blynk auth token', 'blynk', 'blynk', ['blynk'], r'[A-Za-z0-9_\-]{32}', '{a32}', 'BLYNK_AUTH_TOKEN', conf='high')
P('blynk-url-token', 'Blynk device token in URL', 'blynk', r'''blynk\.cloud/external/api/[a-z/]+\?token=([A-Za-z0-9_\-]{32})''', ['blynk.cloud'], 'https://fra1.blynk.cloud/external/api/update?token={a32}&v1=1')
P('thingsboard-access-token', 'ThingsBoard device access token', 'thingsboard', r'''thingsboard\.cloud/api/v1/([A-Za-z0-9]{20})/''', ['thingsboard.cloud'], 'https://thingsboard.cloud/api/v1/{a20}/telemetry')
C('thingsboard-provision-key', 'ThingsBoard provision key/secret', 'thingsboard', 'provision(?:DeviceKey|DeviceSecret|_device_key|_device_secret)', ['provision'], r'[A-Za-z0-9]{20}', '{a20}', 'provisionDeviceSecret', conf='high')
C('cisco-meraki-key', 'Cisco Meraki API key', 'cisco', 'meraki', ['meraki'], r'[a-f0-9]{40}', '{h40}', 'MERAKI_DASHBOARD_API_KEY', conf='high')
P('clickhouse-cloud-secret', 'ClickHouse Cloud API secret', 'clickhouse', r'\b(4b1d[A-Za-z0-9]{38})\b', ['4b1d'], '4b1d{a38}')
P('sourcegraph-token', 'Sourcegraph access token', 'sourcegraph', r'\b(sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40})\b', ['sgp_'], 'sgp_{h16}_{h40}')
P('sourcegraph-cody-token', 'Sourcegraph Cody gateway token', 'sourcegraph', r'\b(slk_[a-f0-9]{64})\b', ['slk_'], 'slk_{h64}')
P('django-insecure-key', 'Django SECRET_KEY (django-insecure)', 'django', r'''(django-insecure-[^\s'"]{30,})''', ['django-insecure-'], 'django-insecure-{a50}')
C('django-secret-key', 'Django SECRET_KEY', 'django', r'django[_-]?secret[_-]?key', ['django'], r'''[^\s'"]{50}''', '{a50}', 'DJANGO_SECRET_KEY', conf='high')
P('wireguard-private-key', 'WireGuard private key', 'wireguard', r'''(?i)PrivateKey\s*=\s*([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)''', ['privatekey'], '{b42}A=',
  lines=['PrivateKey = {S}', 'wg: PrivateKey={S}'])
P('freemius-secret-key', 'Freemius secret key', 'freemius', r'''(?i)["']secret_key["']\s*=>\s*["'](sk_[\S]{29})["']''', ['secret_key'], 'sk_{a29}', lines=["'secret_key' => '{S}',", '"secret_key" => "{S}"'])
P('psexec-password', 'PsExec password argument', 'psexec', r'''(?i)psexec(?:64)?(?:\.exe)?\s[^\n]{0,200}?\s-p\s+(?:"([^"\s]{3,})"|'([^'\s]{3,})'|([^\s"']{3,}))''', ['psexec'], 'Pw{a10}',
  lines=['psexec \\\\host01 -u admin -p {S} cmd.exe', 'PsExec.exe \\\\srv -u CORP\\ci -p "{S}" -accepteula whoami'], generic=True)

# ---- Private keys ---------------------------------------------------------------------------
R('private-key-pem', 'PEM private key', 'private_key', 'high',
  r'''(-----BEGIN[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:(?:\\[rn]|["'+,\s])*[A-Za-z0-9+/=:,\-]{1,})*(?:(?:\\[rn]|["'+,\s])*-----END[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----)?)''',
  ['-----begin'], '-----BEGIN RSA PRIVATE KEY-----\\nMIIEow{b58}\\n{b64}', lines=['+ echo "{S}"', 'key: "{S}"'],
  extra_examples=['-----BEGIN OPENSSH PRIVATE KEY-----', '2026-01-01T00:00:00Z -----BEGIN EC PRIVATE KEY-----'],
  counter=['-----BEGIN PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----'])
P('openssh-private-key-body', 'OpenSSH private key body', 'private_key', r'''\b(b3BlbnNzaC1rZXktdjE[A-Za-z0-9+/=]{20,}(?:(?:\\[rn]|["'+,\s])+[A-Za-z0-9+/=]{16,})*)''', ['b3BlbnNzaC1rZXktdjE'],
  'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAB{b20}', lines=['{S}', '+ {S}'])
P('pkcs-private-key-der-body', 'PKCS#1/#8 private key body (base64 DER)', 'private_key',
  r'''(?:^|[^A-Za-z0-9+/])((?:MII[A-Za-z0-9+/]{2}(?:AIBAAK|[QAgI]IBADAN)|MHcCAQEEI|MIG[A-Za-z0-9+/]AgEAMBMGByqGSM49)[A-Za-z0-9+/]{20,}={0,2})''', ['AIBAAK', 'IBADAN', 'MHcCAQEEI', 'AgEAMBMGByqGSM49'],
  'MIIEpAIBAAKCAQEA{b48}', lines=['{S}', '"{S}\\n"'], conf='medium', counter=['MIIDdzCCAl+gAwIBAgIEbNoQtzANBgkqhkiG9w0BAQsFADBsMRAwDgYDVQQGEwdVbmtub3du'])
P('base64-pem-private-key', 'Base64-encoded PEM private key', 'private_key', r'''\b(LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})''', ['LS0tLS1CRUdJTi'],
  lambda: __import__('base64').b64encode(('-----BEGIN RSA PRIVATE KEY-----\n' + rnd('b', 40)).encode()).decode(), validator='b64_private_key',
  lines=['PRIVATE_KEY_B64={S}', '  tls.key: {S}'], counter=['  tls.crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM='])
P('putty-private-key', 'PuTTY private key', 'private_key', r'''(PuTTY-User-Key-File-[23]:\s*[a-z0-9\-]+)''', ['PuTTY-User-Key-File-'], 'PuTTY-User-Key-File-3: ssh-ed25519', lines=['{S}', '+ cat key.ppk: {S}'], literal_secret=True)

# ---- Connection strings and URLs ------------------------------------------------------------
DB_KWS = [x + '://' for x in ['postgres', 'postgresql', 'mysql', 'mysqlx', 'mariadb', 'mongodb', 'mongodb+srv', 'redis', 'rediss', 'amqp', 'amqps',
          'mssql', 'sqlserver', 'oracle', 'clickhouse', 'couchdb', 'neo4j', 'neo4j+s', 'bolt', 'cockroachdb', 'cassandra', 'ldap', 'ldaps',
          'sqlalchemy', 'postgis', 'timescaledb', 'nats', 'kafka', 'memcached', 'elasticsearch', 'snowflake']] + ['jdbc:']
DBS = r'(?:postgres(?:ql)?|mysql|mysqlx|mariadb|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver|oracle|clickhouse|couchdb|neo4j(?:\+s)?|bolt|cockroachdb|cassandra|ldaps?|jdbc:[a-z0-9]+|sqlalchemy|postgis|timescaledb|nats|kafka|memcached|elasticsearch|snowflake)'
R('db-connection-url', 'Database connection URL with password', 'database', 'high',
  r'''(?i)\b''' + DBS + r'''://[^:/@\s'"]{0,128}:([^@/\s'"]{1,256})@[^\s'"/]''', DB_KWS, 'Pw{a14}',
  lines=['DATABASE_URL=postgres://app:{S}@db.internal:5432/app', 'mongodb+srv://ci:{S}@cluster0.abcd.mongodb.net/test'],
  counter=['DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app', 'redis://:***@cache:6379/0'], generic=True, requires=['@'])
R('basic-auth-url', 'URL with embedded credentials', 'http', 'medium',
  r'''(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^:/@\s'"<>]{1,128}:([^@/\s'"<>]{1,256})@[A-Za-z0-9\[]''', [c + '://' for c in string.ascii_lowercase + string.digits], 'Pw{a14}',
  lines=['git clone https://ci-bot:{S}@git.example.test/org/repo.git', 'pip install --index-url https://__token__:{S}@pypi.internal/simple pkg'],
  counter=['https://user:password@host/path', 'https://user:${TOKEN}@host/path', 'git clone https://oauth2:<token>@gitlab.test/repo'], generic=True, requires=['@'])
R('jdbc-password-param', 'JDBC / ODBC password parameter', 'database', 'high',
  r'''(?i)(?:jdbc:[a-z0-9]+:|odbc|driver=|dsn=)[^\n]{0,300}?[;?&](?:password|pwd)=([^;&'"\s]{3,128})''', ['password=', 'pwd='], 'Pw{a14}',
  lines=['jdbc:sqlserver://db:1433;databaseName=app;user=ci;password={S};encrypt=true', 'Driver={ODBC Driver 18};Server=db;Uid=ci;Pwd={S};'], generic=True)
R('curl-user-password', 'curl -u / --user credentials', 'http', 'high',
  r'''(?:^|[\s"'])(?:-u|--user|--proxy-user)(?:\s+|=)['"]?(?:([^\s'":]{0,128}:[^\s'"]{3,256})|['"]?[^\s'":]{0,128}['"]?:['"]?([^\s'"]{3,256})|([^\s'":]{8,256}):)''', [' -u ', '"-u ', "'-u ", '\t-u ', ' -u=', '--user', '--proxy-user'], 'Pw{a14}',
  lines=['curl -fsS -u ci-bot:{S} https://artifacts.test/upload', "curl --user 'deploy:{S}' -X POST https://api.test"],
  counter=['curl -u <user:password> https://test.com/endpoint', 'curl -u $USER:$PASS https://x.test', 'curl --user neo4j:[PASSWORD] http://[IP]:7474/'], generic=True)
R('netrc-password', '.netrc machine credentials', 'netrc', 'high',
  r'''(?i)\bmachine\s+\S+\s+login\s+\S+\s+password\s+(\S{3,})''', ['machine'], 'Pw{a14}', lines=['machine api.service.test login ci password {S}', '+ echo machine git.test login bot password {S}'], generic=True)
R('maven-settings-password', 'Maven settings.xml password', 'maven', 'medium',
  r'''(?i)<(?:password|passphrase|privateKeyPassphrase)>([^<$]{4,})</''', ['<password>', '<passphrase>', '<privatekeypassphrase>'], 'Pw{a14}',
  lines=['<server><id>ossrh</id><username>ci</username><password>{S}</password></server>', '  <passphrase>{S}</passphrase>'], counter=['<password>${env.MAVEN_PASSWORD}</password>'], generic=True)
R('cloudinary-url', 'Cloudinary URL', 'cloudinary', 'high', r'''cloudinary://[0-9]{10,20}:([A-Za-z0-9_\-]{20,40})@''', ['cloudinary://'], '{a27}',
  lines=['CLOUDINARY_URL=cloudinary://{d15}:{S}@demo-cloud', 'url: cloudinary://{d15}:{S}@acme'], requires=['@'])

# ---- Tokens and headers ---------------------------------------------------------------------
R('jwt', 'JSON Web Token', 'jwt', 'medium',
  r'''(?:^|[^A-Za-z0-9_\-.])(ey[A-Za-z0-9_\-]{10,}={0,2}\.ey[A-Za-z0-9_\-/+]{6,}={0,2}\.(?:[A-Za-z0-9_\-/+]{6,}={0,2})?)''', ['.eyj'],
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ{a40}.{a43}', lines=['+ export ID_TOKEN={S}', '"access_token":"{S}"'],
  counter=['see eyJhbGciOiJIUzI1NiJ9 header only'])
R('bearer-token-header', 'Authorization header credential', 'http', 'medium',
  r'''(?i)\bauthorization["']?\s*[:=]\s*["']?(?:(?:bearer|token|basic|api-?token|apikey|api-key|key|sso-key|bot|otp|digest|splunk|ssws|dsn)\s+)?([A-Za-z0-9._~+/\-]{8,}={0,2}(?::[A-Za-z0-9._~+/\-]+)?)''',
  ['authorization'], '{a40}', min_entropy=3.0, lines=['curl -H "Authorization: Bearer {S}" https://api.test', "-H 'authorization: token {S}'"],
  counter=['-H "Authorization: Bearer ***"', '-H "Authorization: Bearer $TOKEN"', '-H "Authorization: Bearer <token>"'], generic=True)
R('api-key-header', 'API key HTTP header', 'http', 'medium',
  r'''(?i)(?:^|[\s"'{,(])-?(?:x-)?(?:[a-z0-9]+-)?(?:api-?key|auth-?token|access-?token|private-token|api-?token|x-key)["']?\s*:\s*["']?([A-Za-z0-9._~+/\-]{16,}={0,2})''',
  ['apikey', 'api-key', 'auth-token', 'authtoken', 'access-token', 'private-token', 'api-token', 'apitoken', 'x-key'], '{a32}', min_entropy=3.0,
  lines=['curl -H "X-API-Key: {S}" https://api.test', '-H "apikey: {S}" \\'], counter=['-H "X-API-Key: ${API_KEY}"'], ci_filter=False, generic=True)
R('generic-password', 'Generic password assignment', 'generic', 'low',
  r'''(?i)(?:^|[^a-z0-9])(?:[a-z0-9_\-.]{0,30}(?:pass(?:word|wd|phrase)?|pwd|passphrase))(?:[_\-.]?[a-z0-9]{0,10})["'\\]{0,3}\s{0,10}(?:=|:=|::|:|=>|==|!=|\s+is|\s)\s{0,10}(?:\\?"([^"\\\n]{3,128})\\?"|'([^'\n]{3,128})'|\x60([^\x60\n]{3,128})\x60|([^\s'"\x60,;\\]{3,128}))''',
  ['passw', 'passphrase', 'pwd=', 'pwd:', 'pwd ', 'pwd"', "pwd'", 'pwd_', '_pwd', '-pwd', '_pass', '-pass', '.pass', 'pass=', 'pass:', 'pass "', "pass '"], 'Pw{a14}', min_entropy=1.5, lines=['DB_PASSWORD={S}', 'password: "{S}"'],
  counter=['--- PASS: TestParseConfig (0.42s)', '    --- FAIL: TestPasswordReset/expired_link (0.01s)', 'password=changeme', 'password: "${DB_PASSWORD}"', '--password $DB_PASSWORD', "  htpasswd: ''", 'password = "123"', 'char *password = NULL;'], generic=True)
R('generic-secret', 'Generic secret / token / key assignment', 'generic', 'low',
  r'''(?i)(?:^|[^a-z0-9])(?:[a-z0-9_\-.]{0,30}(?:secret|token|api[_\-.]?key|apikey|access[_\-.]?key|private[_\-.]?key|auth[_\-.]?key|client[_\-.]?secret|credentials?|signing[_\-.]?key|encryption[_\-.]?key|master[_\-.]?key|sas[_\-.]?key|jwt))(?:(?:[_\-.][a-z0-9]{1,12}){0,3}|(?:key|value|id|str|b64|hex)?)["'\\]{0,3}\s{0,10}(?:=|:=|::|:|=>|==|!=|\?=|,)\s{0,10}(?:\\?"((?:[^"\\\n]|\\[^"\n]){8,256})\\?"|'([^'\n]{8,256})'|\x60([^\x60\n]{8,256})\x60|([^\s'"\x60,;\\]{8,256}))''',
  # Every spelling the regex accepts, so that a match always holds a keyword: `jwt` by
  # each byte that can follow it (a 3-byte keyword would need a slow path).
  ['secret', 'token', 'api_key', 'api-key', 'api.key', 'apikey', 'access_key', 'access-key', 'access.key', 'accesskey', 'private_key', 'private-key',
   'private.key', 'privatekey', 'auth_key', 'auth-key', 'auth.key', 'authkey', 'signing', 'encryption', 'master_key', 'masterkey', 'master-key',
   'master.key', 'sas_key', 'sas-key', 'sas.key', 'saskey', 'credential', 'jwt_', 'jwt-', 'jwt.', 'jwtk', 'jwtv', 'jwti', 'jwts', 'jwtb', 'jwth',
   'jwt"', "jwt'", 'jwt\\', 'jwt ', 'jwt\t', 'jwt\x0b', 'jwt\x0c', 'jwt\r', 'jwt=', 'jwt:', 'jwt!', 'jwt?', 'jwt,'], '{a32}', min_entropy=3.0,
  lines=['export DEPLOY_TOKEN={S}', 'client_secret: "{S}"'],
  # each operator the regex accepts begins with one of these, after the name characters,
  # quotes and spaces that follow a keyword
  assignment_after_keyword='=:,!?',
  counter=['tests/test_token.py::test_refresh_token_expiry PASSED  [ 42%]', 'test auth::token::tests::refresh_token_roundtrip ... ok', 'GITHUB_TOKEN=${GITHUB_TOKEN}', 'env: NPM_TOKEN=${{ secrets.NPM_TOKEN }}', 'export API_KEY=your-api-key-here', '  NPM_TOKEN: ***', 'api_key: REPLACE_ME'], generic=True)


R('xml-config-password', '.NET / NuGet config password value', 'nuget', 'medium',
  r"""(?i)<add\s+key\s*=\s*\\?["'][^"'\\]{0,40}(?:password|passwd|pwd|secret|token|apikey|api_key|connectionstring)[^"'\\]{0,20}\\?["']\s+value\s*=\s*\\?["']([^"'\\]{3,256})\\?["']""",
  ['<add'], 'Pw{a14}', lines=['<add key="ClearTextPassword" value="{S}" />', '<add key="SmtpPassword" value="{S}"/>'], generic=True,
  counter=['<add key="ClearTextPassword" value="%NUGET_PASSWORD%" />'])
R('dotnet-network-credential', '.NET NetworkCredential literal', 'generic', 'medium',
  r"""NetworkCredential\(\s*\\?"[^"\\]{1,128}\\?"\s*,\s*\\?"([^"\\]{3,128})\\?\"""", ['networkcredential'], 'Pw{a14}',
  lines=['var c = new NetworkCredential("ci@corp.test", "{S}");', 'client.Credentials = new NetworkCredential("svc", "{S}", "CORP");'])
C('saucelabs-access-key', 'Sauce Labs access key', 'sauce', 'sauce', ['sauce'], UUID, '{U}', 'SAUCE_ACCESS_KEY', conf='high', ci_filter=False)
C('sourcegraph-token-legacy', 'Sourcegraph access token (legacy 40-hex)', 'sourcegraph', 'sourcegraph|src[_-]access[_-]token', ['sourcegraph', 'src_access', 'src-access'], r'[a-fA-F0-9]{40}', '{h40}', 'SRC_ACCESS_TOKEN', conf='high')
# short-term keys are "bedrock-api-key-" + base64 of a presigned "bedrock.amazonaws.com/?Action=..." URL
P('aws-bedrock-short-term-key', 'Amazon Bedrock short-term API key', 'aws', r'\b(bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t[A-Za-z0-9+/]*={0,2})' + END_B64, ['bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t'], 'bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29tLz9BY3Rpb249{b120}')
R('vault-unseal-key', 'HashiCorp Vault unseal key', 'hashicorp', 'high',
  r"""(?i)vault\s+operator\s+unseal\s+(?:-[a-z\-]+(?:=\S+)?\s+)*([A-Za-z0-9+/]{43,44}={0,2})""", ['unseal'], '{b44}',
  lines=['vault operator unseal {S}', '+ kubectl exec vault-0 -- vault operator unseal -tls-skip-verify {S}'])
R('powershell-password-param', 'PowerShell -Password / -Token argument', 'generic', 'medium',
  r"""(?i)\s-(?:Password|Passwd|SecretKey|ClientSecret|ApiKey|Token|AccessToken|PersonalAccessToken)\s+(?:"([^"\s$]{4,128})"|'([^'\s]{4,128})'|([^\s"'$\x60|;]{4,128}))""",
  ['-password', '-passwd', '-secretkey', '-clientsecret', '-apikey', '-token', '-accesstoken', '-personalaccesstoken'], 'Pw{a10}9!',
  lines=['Connect-VIServer -Server vc01 -User admin -Password {S}', 'Invoke-Deploy -ApiKey "{S}" -Verbose'], generic=True,
  counter=['Connect-VIServer -Server vc01 -User admin -Password $password', 'docker login -u ci --password-stdin'])


P('postman-api-key', 'Postman API key', 'postman', r'\b(PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b', ['PMAK-'], 'PMAK-{h24}-{h34}')
P('maxmind-license-key', 'MaxMind license key', 'maxmind', r'\b([A-Za-z0-9]{6}_[A-Za-z0-9]{29}_mmk)\b', ['_mmk'], '{a6}_{a29}_mmk')
C('sendbird-token', 'Sendbird access token', 'sendbird', 'sendbird', ['sendbird'], r'[a-f0-9]{40}', '{h40}', 'SENDBIRD_API_TOKEN', conf='high')
C('looker-client-secret', 'Looker API client secret', 'looker', 'looker', ['looker'], r'[A-Za-z0-9]{24}', '{a24}', 'LOOKERSDK_CLIENT_SECRET', conf='high')
C('pusher-secret', 'Pusher app secret', 'pusher', 'pusher', ['pusher'], r'[a-f0-9]{20}', '{h20}', 'PUSHER_APP_SECRET', conf='high')
C('ably-api-key', 'Ably API key', 'ably', 'ably', ['ably'], r'[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{6}:[A-Za-z0-9_\-]{43}', '{a6}.{a6}:{a43}', 'ABLY_API_KEY', conf='high')
C('deepgram-key', 'Deepgram API key', 'deepgram', 'deepgram', ['deepgram'], r'[a-f0-9]{40}', '{h40}', 'DEEPGRAM_API_KEY', conf='high')
C('assemblyai-key', 'AssemblyAI API key', 'assemblyai', 'assemblyai|assembly_ai', ['assemblyai', 'assembly_ai'], r'[a-f0-9]{32}', '{h32}', 'ASSEMBLYAI_API_KEY', conf='high')
C('azure-openai-key', 'Azure OpenAI / Cognitive Services key', 'azure', 'azure[_-]?openai|cognitive|ocp-apim-subscription-key|azure[_-]?ai', ['azure_openai', 'azureopenai', 'azure-openai', 'cognitive', 'ocp-apim-subscription-key', 'azure_ai', 'azure-ai', 'azureai'], r'[a-f0-9]{32}|[A-Za-z0-9]{84}', '{h32}', 'AZURE_OPENAI_API_KEY', conf='high')
C('stability-key', 'Stability AI API key', 'stability', 'stability', ['stability'], r'sk-[A-Za-z0-9]{48}', 'sk-{a48}', 'STABILITY_API_KEY', conf='high')
C('qdrant-key', 'Qdrant API key', 'qdrant', 'qdrant', ['qdrant'], r'[A-Za-z0-9_\-.|]{32,120}', '{a48}', 'QDRANT_API_KEY', conf='high', min_entropy=3.5)
C('weaviate-key', 'Weaviate API key', 'weaviate', 'weaviate', ['weaviate'], r'[A-Za-z0-9]{32,48}', '{a40}', 'WEAVIATE_API_KEY', conf='high')
C('bitrise-token', 'Bitrise access token', 'bitrise', 'bitrise', ['bitrise'], r'[A-Za-z0-9_\-]{86}', '{a86}', 'BITRISE_TOKEN', conf='high')
C('appveyor-token', 'AppVeyor API token', 'appveyor', 'appveyor', ['appveyor'], r'v2\.[a-z0-9]{20}|[a-z0-9]{20}', 'v2.{l20}', 'APPVEYOR_TOKEN', conf='high')
C('quay-token', 'Quay.io robot / OAuth token', 'quay', r'quay', ['quay'], r'[A-Z0-9]{64}|[A-Za-z0-9]{40}', '{u64}', 'QUAY_ROBOT_TOKEN', conf='high')
C('keycloak-client-secret', 'Keycloak client secret', 'keycloak', 'keycloak|kc[_-]client[_-]secret', ['keycloak', 'kc_client', 'kc-client'], r'[A-Za-z0-9]{32}', '{a32}', 'KEYCLOAK_CLIENT_SECRET', conf='high')
C('zoho-token', 'Zoho OAuth token', 'zoho', 'zoho', ['zoho'], r'1000\.[a-f0-9]{32}\.[a-f0-9]{32}', '1000.{h32}.{h32}', 'ZOHO_REFRESH_TOKEN', conf='high')
C('mux-secret', 'Mux token secret', 'mux', r'mux[_-]token[_-]secret', ['mux_token', 'mux-token'], r'[A-Za-z0-9+/]{75}', '{a75}', 'MUX_TOKEN_SECRET', conf='high')
R('harbor-robot-secret', 'Harbor robot account credentials', 'harbor', 'medium', r"""(?i)robot\$[a-z0-9_\-+]{1,64}[\s'":]{1,5}(?:-p\s+|--password[\s=]+)?['"]?([A-Za-z0-9]{32})\b""", ['robot$'], '{a32}',
  lines=['docker login harbor.test -u robot$ci+push -p {S}', 'creds: robot$proj+ci:{S}'])
R('docker-login-password', 'docker/podman/helm login password argument', 'generic', 'high',
  r"""(?i)\b(?:docker|podman|buildah|skopeo|helm(?:\s+registry)?|oras|crane|nerdctl)\s+login\b[^\n]{0,200}?\s(?:-p|--password)(?:\s+|=)(?:"([^"\s]{3,256})"|'([^'\s]{3,256})'|([^\s"'|;&]{3,256}))""",
  ['login'], 'Pw{a14}', lines=['+ docker login -u ci -p {S} registry.test', 'helm registry login harbor.test --username ci --password={S}'], generic=True,
  counter=['echo "$TOKEN" | docker login ghcr.io -u bot --password-stdin', 'docker login -u ci -p $REGISTRY_PASSWORD registry.test'])
R('mysql-cli-password', 'mysql/mariadb client -p<password>', 'database', 'high',
  r"""(?i)\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump|mysqlsh)\b[^\n|;&]{0,200}?\s(?:-p|--password=)(?:"([^"\s]{3,128})"|'([^'\s]{3,128})'|([^\s"'\-][^\s"']{2,127}))""",
  ['mysql', 'mariadb'], 'Pw{a14}', lines=['+ mysql -h db -u root -p{S} -e "select 1"', 'mysqldump --user=ci --password={S} app > dump.sql'], generic=True,
  counter=['mysql -u root -p -e "show databases"', 'mysql -u root -p$MYSQL_ROOT_PASSWORD'])
R('sshpass-password', 'sshpass -p password', 'generic', 'high', r"""\bsshpass\s+-p\s*(?:"([^"\s]{3,128})"|'([^'\s]{3,128})'|([^\s"']{3,128}))""", ['sshpass'], 'Pw{a14}',
  lines=['sshpass -p {S} ssh ci@host uptime', "+ sshpass -p '{S}' scp a host:/tmp"], generic=True, counter=['sshpass -p "$SSH_PASS" ssh host'])
R('openssl-pass-argument', 'openssl / keytool password argument', 'generic', 'high',
  r"""(?i)\s-(?:passin|passout|password|storepass|keypass|srcstorepass|deststorepass|pass)\s+(?:pass:)?(?:"([^"\s]{3,128})"|'([^'\s]{3,128})'|([^\s"'$|;&]{3,128}))""",
  ['-passin', '-passout', '-storepass', '-keypass', 'storepass', '-pass '], 'Pw{a14}',
  lines=['openssl pkcs12 -export -in c.pem -out c.p12 -passout pass:{S}', 'keytool -importkeystore -srcstorepass {S} -destkeystore ks.jks'], generic=True,
  counter=['openssl pkcs12 -passin env:P12_PASS -in x.p12', 'keytool -list -storepass $KS_PASS'])
R('htpasswd-batch-password', 'htpasswd -b password argument', 'generic', 'high', r"""\bhtpasswd\s+-[a-zA-Z]*b[a-zA-Z]*\s+(?:-[a-zA-Z]+\s+)*\S+\s+\S+\s+(?:"([^"\s]{3,128})"|'([^'\s]{3,128})'|([^\s"'$]{3,128}))""", ['htpasswd'], 'Pw{a14}',
  lines=['htpasswd -Bbn admin {S}'.replace('-Bbn admin', '-Bb /etc/nginx/.htpasswd admin'), 'htpasswd -cb .htpasswd ci {S}'], generic=True)
R('npmrc-password', 'npm registry _password (base64)', 'npm', 'high', r"""(?i)(?:^|:)_password\s*=\s*["']?([A-Za-z0-9+/=]{8,})""", ['_password'], '{b24}',
  lines=['//npm.pkg.test/:_password={S}', '_password="{S}"'])


P('dependency-track-key', 'OWASP Dependency-Track API key', 'dependencytrack', r'\b(odt_[A-Za-z0-9]{32,})\b', ['odt_'], 'odt_{a32}')
P('cerebras-key', 'Cerebras API key', 'cerebras', r'\b(csk-[a-z0-9]{48})\b', ['csk-'], 'csk-{l48}')
P('apify-token', 'Apify API token', 'apify', r'\b(apify_api_[A-Za-z0-9]{36})\b', ['apify_api_'], 'apify_api_{a36}')
P('unkey-root-key', 'Unkey root key', 'unkey', r'\b(unkey_[A-Za-z0-9]{16,})\b', ['unkey_'], 'unkey_{a24}')
P('dbt-cloud-token', 'dbt Cloud service token', 'dbt', r'\b(dbt[cu]_[A-Za-z0-9_\-]{40,})' + END, ['dbtc_', 'dbtu_'], 'dbtc_{a48}')
C('truenas-api-key', 'TrueNAS API key', 'truenas', 'truenas', ['truenas'], r'[0-9]+-[A-Za-z0-9]{64}', '{d2}-{a64}', 'TRUENAS_API_KEY', conf='high')
C('kagi-api-key', 'Kagi API key', 'kagi', 'kagi', ['kagi'], r'[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{22,43}', '{a22}.{a43}', 'KAGI_API_KEY', conf='high')
C('together-api-key', 'Together AI API key', 'together', r'together[_-]?(?:ai)?[_-]?api[_-]?key', ['together'], r'(?:tgp_v1_)?[A-Za-z0-9_\-]{40,64}', '{h64}', 'TOGETHER_API_KEY', conf='high')
C('sparkpost-key', 'SparkPost API key', 'sparkpost', 'sparkpost', ['sparkpost'], r'[a-f0-9]{40}', '{h40}', 'SPARKPOST_API_KEY', conf='high')
C('browserstack-key', 'BrowserStack access key', 'browserstack', 'browserstack', ['browserstack'], r'[A-Za-z0-9]{20}', '{a20}', 'BROWSERSTACK_ACCESS_KEY', conf='high')
C('infura-key', 'Infura API key / secret', 'infura', 'infura', ['infura'], r'[a-f0-9]{32}', '{h32}', 'INFURA_API_SECRET', conf='high')
C('etherscan-key', 'Etherscan API key', 'etherscan', 'etherscan|bscscan|polygonscan', ['etherscan', 'bscscan', 'polygonscan'], r'[A-Z0-9]{34}', '{u34}', 'ETHERSCAN_API_KEY', conf='high')
C('pinata-key', 'Pinata API secret / JWT', 'pinata', 'pinata', ['pinata'], r'[a-f0-9]{64}|[a-f0-9]{20}', '{h64}', 'PINATA_SECRET_API_KEY', conf='high')
C('fivetran-secret', 'Fivetran API secret', 'fivetran', 'fivetran', ['fivetran'], r'[A-Za-z0-9]{32}', '{a32}', 'FIVETRAN_API_SECRET', conf='high')
C('codacy-token', 'Codacy project/API token', 'codacy', 'codacy', ['codacy'], r'[a-f0-9]{32}|[A-Za-z0-9]{20}', '{h32}', 'CODACY_PROJECT_TOKEN', conf='high')
C('coveralls-token', 'Coveralls repo token', 'coveralls', 'coveralls', ['coveralls'], r'[A-Za-z0-9]{32,37}', '{a33}', 'COVERALLS_REPO_TOKEN', conf='high')
C('expo-token', 'Expo access token', 'expo', r'expo[_-]token', ['expo_token', 'expo-token'], r'[A-Za-z0-9_\-]{40}', '{a40}', 'EXPO_TOKEN', conf='high')
C('coda-token', 'Coda API token', 'coda', r'coda[_-]?(?:api)?[_-]?(?:token|key)', ['coda'], UUID, '{U}', 'CODA_API_TOKEN', conf='high', ci_filter=False)
R('azure-app-configuration-connection-string', 'Azure App Configuration connection string secret', 'azure', 'high',
  r"""(?i)Endpoint=https://[a-z0-9\-]+\.azconfig\.io;Id=[^;\s]{4,64};Secret=([A-Za-z0-9+/]{40,88}={0,2})""", ['azconfig.io'], '{b43}=',
  lines=['APPCONFIG="Endpoint=https://cfg-prod.azconfig.io;Id=ab12-l0-s0:Zq8rT4lM0pXc2VbNk7Wd;Secret={S}"', 'Endpoint=https://x.azconfig.io;Id=x1-s0:q8rT4lM0;Secret={S}'])

# ---------------------------------------------------------------------------------------------
def toml_str(s):
    # TOML's literal strings hold no control character but tab: the others need a basic
    # string and an escape
    if any(c != '\t' and (c < ' ' or c == '\x7f') for c in s):
        pass
    elif "'''" not in s and '\n' not in s and "'" not in s:
        return "'" + s + "'"
    elif "'''" not in s and '\n' not in s:
        return "'''" + s + "'''"
    escapes = {'\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\x0c': '\\f'}
    return '"' + ''.join(escapes.get(c, c if ' ' <= c != '\x7f' else '\\u%04X' % ord(c)) for c in s) + '"'

out = ['# tailguard built-in secret detection rules.',
       '# Written from providers\' documented token formats; examples are synthetic (random fill of each format).',
       '# Fields: id, name, family, confidence (low|medium|high), regex (secret = named group `secret`, else the first',
       '# participating group), keywords (case-insensitive literals for the prefilter), optional requires,',
       '# requires_after_keyword, assignment_after_keyword, validator, min_entropy,',
       '# ci_filter (apply the CI-identifier allowlist), examples, counter_examples.', '']
for r in RULES:
    out.append('[[rule]]')
    for k in ('id', 'name', 'family', 'confidence'):
        out.append('%s = %s' % (k, toml_str(r[k])))
    out.append('regex = %s' % toml_str(r['regex']))
    out.append('keywords = [%s]' % ', '.join(toml_str(k) for k in r['keywords']))
    if r['requires']:
        out.append('requires = [%s]' % ', '.join(toml_str(k) for k in r['requires']))
    if r['requires_after_keyword']:
        out.append('requires_after_keyword = [%s]' % ', '.join(toml_str(k) for k in r['requires_after_keyword']))
    if r['assignment_after_keyword']:
        out.append('assignment_after_keyword = %s' % toml_str(r['assignment_after_keyword']))
    if r['validator']:
        out.append('validator = %s' % toml_str(r['validator']))
    if r['min_entropy'] is not None:
        out.append('min_entropy = %s' % r['min_entropy'])
    if r['generic']:
        out.append('generic = true')
    if r['ci_filter'] is not None:
        out.append('ci_filter = %s' % ('true' if r['ci_filter'] else 'false'))
    out.append('examples = [%s]' % ', '.join(toml_str(e) for e in r['examples']))
    out.append('counter_examples = [%s]' % ', '.join(toml_str(e) for e in r['counter_examples']))
    out.append('')
open(sys.argv[1] if len(sys.argv) > 1 else "src/detect/rules.toml", "w").write('\n'.join(out))
print(len(RULES), 'rules', file=sys.stderr)
