/**
 * The texts of the mails Tresor sends, in German and English. Plain text only: no remote images, no
 * tracking, and links that carry a one-time key put it into the URL fragment, which browsers never
 * send to a server or into a Referer.
 */
export type MailLanguage = 'de' | 'en';

export type MailTemplate =
  | { kind: 'invitation'; link: string; expiresAt: string; organisation: string; role: string }
  | { kind: 'password-reset'; link: string; expiresAt: string }
  | { kind: 'access-link'; link: string; expiresAt: string; organisation: string; grantEndsAt: string }
  | { kind: 'failed-logins'; failures: number; time: string }
  | { kind: 'session-locked'; time: string };

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
