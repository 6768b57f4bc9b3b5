# The Samba DC test fixture, in one Python process on sam.ldb (samba not running): test policy,
# SPNs, users, nested groups, service accounts, keytabs, and OU=People for the ad connector. Run by test/env/samba-dc.sh with
# /usr/bin/python3 (Samba's bindings) and GNUPGHOME set (every password write needs the key).
#   usage: samba-fixture.py SMB_CONF BASE
# Writes BASE/facts.json (its paths are under BASE; samba-dc.sh rewrites them in a copy).
# Synced users' passwords are test passwords (the prefix of test/lib/passwords.ts, so the secrecy
# scan finds any leak); facts.json holds only their labels.
# Service accounts get random passwords, written to 0600 files.
import json
import os
import secrets
import sys

import ldb
from samba import enable_net_export_keytab
from samba.auth import system_session
from samba.dcerpc import misc, security
from samba.ndr import ndr_unpack
from samba.net import Net
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.sd_utils import SDUtils

TEST_PASSWORD_PREFIX = 'Zé€-pw-'  # test/lib/passwords.ts
# Labels avoid the account name: Samba's complexity check refuses a password that contains it.
USERS = {
    'alice': 'al-init-1',
    'bob': 'bo-init-1',
    'carol': 'ca-init-1',
    'dave': 'da-init-1',
    'erin': 'er-init-1 ñüß 日本 ✓',
}

smb_conf, base = sys.argv[1], sys.argv[2]
lp = LoadParm()
lp.load(smb_conf)
realm = lp.get('realm').upper()
dns_domain = realm.lower()
samdb = SamDB(url=lp.private_path('sam.ldb'), session_info=system_session(), lp=lp)
base_dn = str(samdb.domain_dn())
users_dn = 'CN=Users,' + base_dn


def random_password():
    return secrets.token_urlsafe(18) + 'Aa1!'


def write_secret(name, value):
    path = os.path.join(base, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(value)
    return path


def modify(dn, attr, values, flag=ldb.FLAG_MOD_REPLACE):
    m = ldb.Message()
    m.dn = ldb.Dn(samdb, dn)
    m[attr] = ldb.MessageElement(values, flag, attr)
    samdb.modify(m)


def ids(dn):
    r = samdb.search(base=dn, scope=ldb.SCOPE_BASE, attrs=['objectGUID', 'objectSid'])[0]
    guid = str(ndr_unpack(misc.GUID, r['objectGUID'][0]))
    sid = str(ndr_unpack(security.dom_sid, r['objectSid'][0]))
    return guid, sid


# Test policy: kpasswd right after an admin set must work (default minimum age is one day).
modify(base_dn, 'minPwdAge', ['0'])
dc_dn = 'CN=DC1,OU=Domain Controllers,' + base_dn
# What samba_spnupdate would add (the dnsupdate service is off): needed for GSSAPI LDAP binds.
modify(dc_dn, 'servicePrincipalName', ['ldap/dc1.' + dns_domain, 'ldap/DC1'], ldb.FLAG_MOD_ADD)

admin_password = random_password()
samdb.setpassword('(sAMAccountName=Administrator)', admin_password)
admin_file = write_secret('admin.pw', admin_password)

facts_users = {}
for name, label in USERS.items():
    samdb.newuser(name, TEST_PASSWORD_PREFIX + label, useusernameascn=True)
    dn = 'CN=%s,%s' % (name, users_dn)
    guid, sid = ids(dn)
    facts_users[name] = {'sam': name, 'dn': dn, 'upn': '%s@%s' % (name, dns_domain), 'objectGuid': guid,
                         'objectSid': sid, 'passwordLabel': label}

groups = ['grp-inner', 'grp-mid', 'pwsync-sync', 'pwsync-exclude']
for g in groups:
    samdb.newgroup(g)
samdb.add_remove_group_members('grp-inner', ['alice'])
samdb.add_remove_group_members('grp-mid', ['grp-inner'])
samdb.add_remove_group_members('pwsync-sync', ['grp-mid', 'bob', 'carol', 'erin'])
samdb.add_remove_group_members('pwsync-exclude', ['carol'])

# The ad connector's targets: people in OU=People (with mail), and pwsync-svc holding nothing but
# "Reset Password" (User-Force-Change-Password) on the users below that OU. The ACE is on the OU
# before the users exist, so they inherit it as they are created.
RESET_PASSWORD = '00299570-246d-11d0-a768-00aa006e0529'
USER_CLASS = 'bf967aba-0de6-11d0-a285-00aa003049e2'
PEOPLE = {
    'frank': 'fr-init-1',
    'grace': 'gr-init-1',
    'heidi': 'he-init-1',
    'ivan': 'iv-init-1',
    'judy': 'ju-init-1',
}
people_ou = 'OU=People,' + base_dn
samdb.create_ou(people_ou)
svc_password = random_password()
svc_dn = 'CN=pwsync-svc,' + users_dn
samdb.newuser('pwsync-svc', svc_password, useusernameascn=True)
samdb.setexpiry('(sAMAccountName=pwsync-svc)', 0, no_expiry_req=True)
svc_file = write_secret('svc.pw', svc_password)
SDUtils(samdb).dacl_add_ace(people_ou, '(OA;CIIO;CR;%s;%s;%s)' % (RESET_PASSWORD, USER_CLASS, ids(svc_dn)[1]))
facts_people = {}
for name, label in PEOPLE.items():
    mail = '%s@%s' % (name, dns_domain)
    samdb.newuser(name, TEST_PASSWORD_PREFIX + label, useusernameascn=True, userou='OU=People', mailaddress=mail)
    dn = 'CN=%s,%s' % (name, people_ou)
    guid, sid = ids(dn)
    facts_people[name] = {'sam': name, 'dn': dn, 'upn': '%s@%s' % (name, dns_domain), 'mail': mail,
                          'objectGuid': guid, 'objectSid': sid, 'passwordLabel': label}

reader_password = random_password()
samdb.newuser('pwsync-reader', reader_password, useusernameascn=True)
reader_file = write_secret('reader.pw', reader_password)

hub_spn = 'PWSYNC/hub.' + dns_domain
hub_dn = 'CN=pwsync-hub,' + users_dn
samdb.newuser('pwsync-hub', random_password(), useusernameascn=True)
samdb.setexpiry('(sAMAccountName=pwsync-hub)', 0, no_expiry_req=True)
modify(hub_dn, 'servicePrincipalName', [hub_spn], ldb.FLAG_MOD_ADD)
# Without this the SPN's keytab and tickets are RC4 only (recipe gotcha 10): 24 = AES128 | AES256.
modify(hub_dn, 'msDS-SupportedEncryptionTypes', ['24'])

enable_net_export_keytab()
net = Net(None, lp)
keytabs = {}
for name, principal in [('hub.keytab', hub_spn), ('dc1.keytab', 'DC1$'), ('alice.keytab', 'alice')]:
    path = os.path.join(base, name)
    if os.path.exists(path):
        os.unlink(path)
    net.export_keytab(keytab=path, principal=principal)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        sys.exit('exportkeytab wrote nothing for %s' % principal)  # it does not fail on its own (gotcha 11)
    os.chmod(path, 0o600)
    keytabs[name] = path

dc_guid, dc_sid = ids(dc_dn)
facts = {
    'base': base,
    'smbConf': smb_conf,
    'gnupgHome': os.path.join(base, 'gnupg'),
    'krb5Conf': os.path.join(base, 'krb5.conf'),
    'hostsFile': os.path.join(base, 'hosts'),
    'caPem': lp.private_path('tls/ca.pem'),
    'samLdb': lp.private_path('sam.ldb'),
    'realm': realm,
    'domain': dns_domain,
    'netbios': lp.get('workgroup'),
    'baseDn': base_dn,
    'dcHost': 'DC1.' + dns_domain,
    'ldapsUrl': 'ldaps://127.0.0.1:636',
    'admin': {'bindDn': 'Administrator@' + dns_domain, 'passwordFile': admin_file},
    'reader': {'sam': 'pwsync-reader', 'dn': 'CN=pwsync-reader,' + users_dn,
               'bindDn': 'pwsync-reader@' + dns_domain, 'passwordFile': reader_file},
    'hub': {'sam': 'pwsync-hub', 'dn': hub_dn, 'spn': hub_spn, 'service': 'PWSYNC@hub.' + dns_domain,
            'keytab': keytabs['hub.keytab']},
    'dc': {'sam': 'DC1$', 'principal': 'DC1$@' + realm, 'dn': dc_dn, 'objectGuid': dc_guid, 'objectSid': dc_sid,
           'keytab': keytabs['dc1.keytab']},
    'userKeytab': {'principal': 'alice@' + realm, 'keytab': keytabs['alice.keytab']},
    'groups': {g: 'CN=%s,%s' % (g, users_dn) for g in groups},
    'users': facts_users,
    'people': {'ou': people_ou, 'users': facts_people},
    'svc': {'sam': 'pwsync-svc', 'dn': svc_dn, 'bindDn': 'pwsync-svc@' + dns_domain, 'passwordFile': svc_file},
}
with open(os.path.join(base, 'facts.json'), 'w') as f:
    json.dump(facts, f, indent=2, ensure_ascii=False)
