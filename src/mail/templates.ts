/**
 * The texts of the mails Tresor sends, in German and English. Plain text only: no remote images, no
 * tracking, and links that carry a one-time key put it into the URL fragment, which browsers never
 * send to a server or into a Referer.
 */
export type MailLanguage = 'de' | 'en';

export type MailTemplate =
  | { kind: 'invitation'; link: string; expiresAt: string; organisation: string; role: string }
  | { kind: 'password-reset'; link: string; expiresAt: string }
  | { kind: 'activation-key'; activationKey: string; organisation: string; appUrl: string }
  | { kind: 'access-link'; link: string; expiresAt: string; organisation: string; grantEndsAt: string }
  | { kind: 'transfer-notification'; link: string; sender: string; organisation: string; subject: string; level: number; files: number; expiresAt: string }
  | { kind: 'transfer-downloaded'; subject: string; recipient: string; time: string }
  | { kind: 'file-request'; link: string; requester: string; organisation: string; level: number; expiresAt: string }
  | { kind: 'transfer-key-pending'; subject: string; recipient: string; fingerprint: string }
  | { kind: 'transfer-key-approved'; subject: string; sender: string }
  | { kind: 'failed-logins'; failures: number; time: string }
  | { kind: 'session-locked'; time: string }
  | { kind: 'second-factor-reset'; time: string };

const when = (iso: string, language: MailLanguage) =>
  new Intl.DateTimeFormat(language === 'de' ? 'de-DE' : 'en-GB', { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' }).format(new Date(iso)) + ' UTC';

export function renderMail(template: MailTemplate, language: MailLanguage): { subject: string; text: string } {
  const de = language === 'de';
  switch (template.kind) {
    case 'invitation':
      return de
        ? {
            subject: `Einladung zu Tresor: ${template.organisation}`,
            text: [
              `Sie wurden zu Tresor eingeladen (${template.organisation}, Rolle: ${template.role}).`,
              '',
              'Legen Sie über diesen Link Ihr Passwort fest. Der Link gilt einmal und bis',
              `${when(template.expiresAt, language)}:`,
              '',
              template.link,
              '',
              'Wenn Sie diese Einladung nicht erwartet haben, ignorieren Sie diese Nachricht.',
            ].join('\n'),
          }
        : {
            subject: `Invitation to Tresor: ${template.organisation}`,
            text: [
              `You have been invited to Tresor (${template.organisation}, role: ${template.role}).`,
              '',
              `Set your password with this link. It works once and until ${when(template.expiresAt, language)}:`,
              '',
              template.link,
              '',
              'If you did not expect this invitation, ignore this message.',
            ].join('\n'),
          };
    case 'activation-key':
      // Only the named first data user receives this key; it works for their account alone, once.
      return de
        ? {
            subject: `Tresor: Ihr Aktivierungsschlüssel für ${template.organisation}`,
            text: [
              `Sie sind die erste Datennutzerin bzw. der erste Datennutzer von ${template.organisation} in Tresor.`,
              '',
              'Nehmen Sie zuerst die Einladung aus der anderen Nachricht an. Geben Sie dann nach der Anmeldung',
              `unter „Adressbuch“ (${template.appUrl}) diesen Aktivierungsschlüssel ein:`,
              '',
              `Aktivierungsschlüssel: ${template.activationKey}`,
              '',
              'Er gilt einmal und nur für Ihr Konto; weder der Betreiber noch Ihr Partner kennt ihn. Danach zeigt',
              'Tresor Ihnen einmal den Wiederherstellungscode Ihrer Organisation: bewahren Sie ihn sicher auf.',
              'Geben Sie diesen Schlüssel an niemanden weiter.',
            ].join('\n'),
          }
        : {
            subject: `Tresor: your activation key for ${template.organisation}`,
            text: [
              `You are the first data user of ${template.organisation} in Tresor.`,
              '',
              'First accept the invitation from the other message. Then, after logging in, enter this activation',
              `key under "Address book" (${template.appUrl}):`,
              '',
              `Activation key: ${template.activationKey}`,
              '',
              'It works once and only for your account; neither the operator nor your partner knows it. Tresor then',
              "shows you your organisation's recovery code, once: keep it safe. Do not pass this key on.",
            ].join('\n'),
          };
    case 'password-reset':
      return de
        ? {
            subject: 'Tresor: neues Passwort festlegen',
            text: [`Über diesen Link legen Sie ein neues Passwort fest (einmal gültig, bis ${when(template.expiresAt, language)}):`, '', template.link].join('\n'),
          }
        : {
            subject: 'Tresor: set a new password',
            text: [`Set a new password with this link (works once, until ${when(template.expiresAt, language)}):`, '', template.link].join('\n'),
          };
    case 'access-link':
      return de
        ? {
            subject: `Tresor: Zugang zu freigegebenen Daten (${template.organisation})`,
            text: [
              `${template.organisation} hat Ihnen Daten freigegeben (bis ${when(template.grantEndsAt, language)}).`,
              '',
              `Dieser Link öffnet sie ohne Anmeldung. Er gilt einmal und bis ${when(template.expiresAt, language)}; geben Sie ihn nicht weiter:`,
              '',
              template.link,
            ].join('\n'),
          }
        : {
            subject: `Tresor: access to shared data (${template.organisation})`,
            text: [
              `${template.organisation} has shared data with you (until ${when(template.grantEndsAt, language)}).`,
              '',
              `This link opens it without logging in. It works once and until ${when(template.expiresAt, language)}; do not pass it on:`,
              '',
              template.link,
            ].join('\n'),
          };
    case 'transfer-notification': {
      // Levels 3 and 4 keep the subject out of the mail: only the sender's organisation and the link.
      const subjectLine = template.level >= 3 ? '' : template.subject;
      return de
        ? {
            subject: `${template.organisation}: ${subjectLine || 'vertrauliche Dateien'} (Tresor)`,
            text: [
              `${template.sender} (${template.organisation}) hat Ihnen ${template.files} Datei(en) über Tresor geschickt, Sicherheitsstufe ${template.level}.`,
              '',
              'Herunterladen:',
              template.link,
              '',
              template.level === 1 ? 'Zum Öffnen geben Sie Ihre E-Mail-Adresse ein, an die diese Nachricht ging.' : template.level === 2 ? 'Zum Öffnen melden Sie sich an oder legen ein kostenloses Gastkonto an.' : 'Die Dateien sind Ende-zu-Ende-verschlüsselt: Sie öffnen sie mit Ihrem SecuPass-Schlüssel.',
              `Verfügbar bis ${when(template.expiresAt, language)}. Geben Sie den Link nicht weiter.`,
            ].join('\n'),
          }
        : {
            subject: `${template.organisation}: ${subjectLine || 'confidential files'} (Tresor)`,
            text: [
              `${template.sender} (${template.organisation}) sent you ${template.files} file(s) through Tresor, security level ${template.level}.`,
              '',
              'Download:',
              template.link,
              '',
              template.level === 1 ? 'To open them, enter the e-mail address this message was sent to.' : template.level === 2 ? 'To open them, log in or create a free guest account.' : 'The files are end-to-end encrypted: you open them with your SecuPass key.',
              `Available until ${when(template.expiresAt, language)}. Do not pass the link on.`,
            ].join('\n'),
          };
    }
    case 'file-request':
      return de
        ? {
            subject: `${template.organisation}: Bitte senden Sie uns Ihre Unterlagen (Tresor)`,
            text: [
              `${template.requester} (${template.organisation}) bittet Sie, Dateien sicher über Tresor zu senden (Sicherheitsstufe ${template.level}).`,
              '',
              'Hochladen:',
              template.link,
              '',
              template.level >= 3 ? 'Die Dateien werden schon in Ihrem Browser verschlüsselt; nur der Empfänger kann sie öffnen.' : 'Die Dateien werden in Ihrem Browser verschlüsselt hochgeladen.',
              `Der Link gilt bis ${when(template.expiresAt, language)}.`,
            ].join('\n'),
          }
        : {
            subject: `${template.organisation}: please send us your documents (Tresor)`,
            text: [
              `${template.requester} (${template.organisation}) asks you to send files securely through Tresor (security level ${template.level}).`,
              '',
              'Upload:',
              template.link,
              '',
              template.level >= 3 ? 'The files are encrypted in your browser already; only the recipient can open them.' : 'The files are encrypted in your browser before they are uploaded.',
              `The link works until ${when(template.expiresAt, language)}.`,
            ].join('\n'),
          };
    case 'transfer-downloaded':
      return de
        ? { subject: `Tresor: „${template.subject}“ wurde heruntergeladen`, text: `${template.recipient} hat die Dateien Ihrer Übertragung „${template.subject}“ am ${when(template.time, language)} heruntergeladen.` }
        : { subject: `Tresor: "${template.subject}" was downloaded`, text: `${template.recipient} downloaded the files of your transfer "${template.subject}" at ${when(template.time, language)}.` };
    case 'transfer-key-pending':
      return de
        ? {
            subject: `Tresor: neuer Schlüssel von ${template.recipient} wartet auf Ihre Freigabe`,
            text: [`${template.recipient} hat einen neuen SecuPass-Schlüssel für Ihre Übertragung „${template.subject}“.`, `Fingerabdruck: ${template.fingerprint}`, 'Vergleichen Sie ihn mit der Empfängerin oder dem Empfänger (z. B. am Telefon) und geben Sie ihn in Tresor unter „Übertragungen“ frei.'].join('\n'),
          }
        : {
            subject: `Tresor: a new key of ${template.recipient} awaits your approval`,
            text: [`${template.recipient} has a new SecuPass key for your transfer "${template.subject}".`, `Fingerprint: ${template.fingerprint}`, 'Compare it with the recipient (say, on the phone) and approve it in Tresor under "Transfers".'].join('\n'),
          };
    case 'transfer-key-approved':
      return de
        ? { subject: 'Tresor: Ihre Dateien lassen sich jetzt öffnen', text: `${template.sender} hat Ihren SecuPass-Schlüssel freigegeben. Öffnen Sie die Übertragung über den Link aus der ersten Nachricht.` }
        : { subject: 'Tresor: your files can be opened now', text: `${template.sender} approved your SecuPass key. Open the transfer with the link from the first message.` };
    case 'failed-logins':
      return de
        ? {
            subject: 'Tresor: fehlgeschlagene Anmeldeversuche',
            text: [
              `Für Ihr Konto gab es ${template.failures} fehlgeschlagene Anmeldeversuche (zuletzt ${when(template.time, language)}).`,
              'Weitere Versuche werden verzögert; Ihr Konto bleibt für Sie nutzbar.',
              'Waren Sie das nicht, ändern Sie Ihr Passwort und richten Sie einen zweiten Faktor ein.',
            ].join('\n'),
          }
        : {
            subject: 'Tresor: failed login attempts',
            text: [
              `There were ${template.failures} failed login attempts for your account (the last at ${when(template.time, language)}).`,
              'Further attempts are slowed down; your account stays usable for you.',
              'If this was not you, change your password and set up a second factor.',
            ].join('\n'),
          };
    case 'second-factor-reset':
      return de
        ? {
            subject: 'Tresor: zweiter Faktor zurückgesetzt',
            text: [
              `Eine Administratorin oder ein Administrator hat am ${when(template.time, language)} den zweiten Faktor Ihres Kontos entfernt; alle Ihre Sitzungen wurden beendet.`,
              'Richten Sie bei der nächsten Anmeldung einen neuen ein. Wenn Sie das nicht veranlasst haben, melden Sie es sofort Ihrer Organisation.',
            ].join('\n'),
          }
        : {
            subject: 'Tresor: second factor reset',
            text: [
              `An administrator removed the second factor of your account at ${when(template.time, language)}; all your sessions were ended.`,
              'Set up a new one at your next login. If you did not ask for this, tell your organisation at once.',
            ].join('\n'),
          };
    case 'session-locked':
      return de
        ? {
            subject: 'Tresor: Sitzung gesperrt',
            text: [
              `Eine Ihrer Sitzungen wurde am ${when(template.time, language)} gesperrt, weil eine frühere Anfrage erneut gesendet wurde.`,
              'Das kann ein Angriff sein. Melden Sie sich neu an und ändern Sie Ihr Passwort, wenn Sie das nicht erklären können.',
            ].join('\n'),
          }
        : {
            subject: 'Tresor: session locked',
            text: [
              `One of your sessions was locked at ${when(template.time, language)} because an earlier request was sent again.`,
              'This may be an attack. Log in again, and change your password if you cannot explain it.',
            ].join('\n'),
          };
  }
}
